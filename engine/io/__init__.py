"""Files: atomic saves (``atomic``), hostile-HDF5 checks (``hdf5``), the datasets a sweep reads — the
lab's HDF5 files (``datasets.LabDataset``) and image files or folders (``images.ImageSet``, one
file's header and pixels in ``imagefiles``), both opened by ``datasets.open_dataset`` and both
``protocol.Dataset``s — trigger files (``triggerfile``), read-ahead (``prefetch``), the content-
keyed activation cache (``cache``) and the memory guard (``memory``)."""
