"""The bundled demo: synthetic faces and triggers (``faces``) and the demo BadNets and their data
(``generate``)."""
