"""The window's menus and toolbar: each entry calls a window or controller method."""

from __future__ import annotations

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMessageBox

from guiapp.views import dialogs

from guiapp.kinds import Tab  # noqa: E402

TABS = tuple(t.title for t in Tab)


def build_menus(win) -> None:
    """Menus File, Sweep, View, Help and the toolbar; the actions become attributes of ``win``."""

    def act(menu, text, slot, shortcut=None) -> QAction:
        a = QAction(text, win)
        if shortcut:
            a.setShortcut(QKeySequence(shortcut))
        a.triggered.connect(lambda checked=False: slot())
        menu.addAction(a)
        return a

    mb = win.menuBar()
    fm = mb.addMenu("&File")
    win.act_open_model = act(fm, "Open &model…", win.open_model, QKeySequence.Open)
    act(fm, "Open &weights…", win.open_weights)
    win.act_open_data = act(fm, "Open &data…", lambda: win.open_data(None))
    win.act_open_folder = act(fm, "Open data &folder…", lambda: win.open_data(None, folder=True))
    fm.addSeparator()
    win.act_demo = act(fm, "Open d&emo", lambda: win.ctl.open_demo("badnet"))
    act(fm, "Open pruning-aware demo", lambda: win.ctl.open_demo("pruning-aware"))
    win.recent_menu = fm.addMenu("Open &recent")
    win.recent_menu.aboutToShow.connect(lambda: _fill_recent(win))
    fm.addSeparator()
    act(fm, "&Export report, B′ and G…", win.export_report, "Ctrl+E")
    fm.addSeparator()
    act(fm, "&Quit", win.close, QKeySequence.Quit)
    sm = mb.addMenu("&Sweep")
    win.act_start = act(sm, "&Start", win.start_sweep, "Ctrl+R")
    act(sm, "&Pause / resume", win.ctl.toggle_pause, "Ctrl+P")
    act(sm, "&Cancel", win.ctl.cancel, "Esc")
    sm.addSeparator()
    act(sm, "Clear activation &cache", win.ctl.clear_cache)
    vm = mb.addMenu("&View")
    for tab in Tab:
        act(vm, tab.title, lambda t=tab: win.tabs.setCurrentIndex(t), f"Ctrl+{int(tab) + 1}")
    act(vm, "Model layers…", win.show_layers)
    act(mb.addMenu("&Help"), "&About PruneLab", lambda: QMessageBox.about(win, "About PruneLab", dialogs.about_text()))
    tb = win.addToolBar("Main")
    tb.setObjectName("mainToolbar")
    tb.setMovable(False)
    for a in (win.act_open_model, win.act_open_data, win.act_demo, win.act_start):
        tb.addAction(a)
    win.act_start.setText("▶ Start")


def _fill_recent(win) -> None:
    win.recent_menu.clear()
    for p in win.recent.files() or ["(none)"]:
        a = win.recent_menu.addAction(p)
        a.setEnabled(p != "(none)")
        a.triggered.connect(lambda checked=False, p=p: win.ctl.open_files([p]))
