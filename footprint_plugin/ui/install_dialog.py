"""The dependency installer in QGIS: a dialog that says what is missing, and a QgsTask that runs pip.

The work itself is :func:`footprint_plugin.setup.dependencies.install`; this is the QGIS glue around it.
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QFontDatabase, QGuiApplication
from qgis.PyQt.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLayout,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
)

from ..setup import dependencies

TITLE = "Building footprints"
LOG_TAG = "Building footprints"


class DependencyInstallTask(QgsTask):
    """Runs pip in the background; ``line`` carries each output line, ``done`` the InstallResult."""

    line = pyqtSignal(str)
    done = pyqtSignal(object)

    def __init__(self, target: Path, packages: list[str], cuda: bool, python: str) -> None:
        super().__init__("Building footprints: installing " + ", ".join(packages), QgsTask.Flag.CanCancel)
        self.target, self.packages, self.cuda, self.python = target, packages, cuda, python
        self.outcome: dependencies.InstallResult | None = None

    def run(self) -> bool:  # worker thread: no widgets here
        try:
            self.outcome = dependencies.install(self.target, cuda=self.cuda, python=self.python,
                                                packages=self.packages, on_line=self.line.emit,
                                                on_progress=lambda f: self.setProgress(100 * f),
                                                cancelled=self.isCanceled)
        except Exception as exc:  # noqa: BLE001 - shown to the user as the one failure message
            self.outcome = dependencies.InstallResult(False, f"The installer stopped: {exc!r}")
        return self.outcome.ok

    def finished(self, ok: bool) -> None:  # main thread
        if self.outcome is None:  # cancelled before it started
            self.outcome = dependencies.InstallResult(False, "The installation was cancelled.", cancelled=True)
        self.done.emit(self.outcome)


class InstallDialog(QDialog):
    """What is missing, CPU or CUDA PyTorch, Install / Cancel / Copy command, and pip's lines as they come."""

    installed = pyqtSignal()

    def __init__(self, missing: list[str], target: Path, parent=None, python: str | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"{TITLE}: install Python packages")
        self.setObjectName("footprint_install_dialog")
        self.missing, self.target = list(missing), Path(target)
        self.python = python or dependencies.qgis_python()
        self.task: DependencyInstallTask | None = None
        self.outcome: dependencies.InstallResult | None = None
        layout = QVBoxLayout(self)
        layout.setSizeConstraint(QLayout.SizeConstraint.SetMinimumSize)  # grows with the status text
        numpy_version = dependencies.installed_numpy()
        intro = QLabel(
            f"<p>Extracting buildings needs these Python packages, which QGIS's Python cannot import: "
            f"<b>{', '.join(self.missing)}</b>.</p>"
            f"<p><b>Install</b> downloads them with QGIS's own Python ({self.python}) into<br><tt>{self.target}</tt><br>"
            f"in the background. QGIS's own packages are left as they are"
            f"{f' (numpy {numpy_version})' if numpy_version else ''}; nothing outside that folder changes.</p>")
        intro.setWordWrap(True)
        intro.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(intro)
        self.cpu = QRadioButton("PyTorch CPU build (about 200 MB; runs on any computer)")
        gpu = dependencies.has_nvidia_gpu()
        self.cuda = QRadioButton("PyTorch CUDA build (about 2.5 GB; for the NVIDIA GPU found)" if gpu else
                                 "PyTorch CUDA build (no NVIDIA driver found: nvidia-smi did not answer)")
        self.cuda.setEnabled(gpu)
        group = QButtonGroup(self)
        for button in (self.cpu, self.cuda):
            group.addButton(button)
            button.setVisible("torch" in self.missing)
            layout.addWidget(button)
        (self.cuda if gpu else self.cpu).setChecked(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        layout.addWidget(self.progress)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.log.setMinimumSize(640, 180)
        self.log.setPlaceholderText("pip's output appears here.")
        layout.addWidget(self.log)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.PlainText)  # pip's lines may hold "<" and ">"
        self.status.setMinimumHeight(4 * self.status.fontMetrics().lineSpacing())
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status)
        self.buttons = QDialogButtonBox()
        self.install_button = QPushButton("Install")
        self.install_button.setDefault(True)
        self.copy_button = QPushButton("Copy command")
        self.copy_button.setToolTip("Copy the pip command, to run it yourself in a terminal")
        self.close_button = QPushButton("Close")
        self.buttons.addButton(self.install_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.buttons.addButton(self.close_button, QDialogButtonBox.ButtonRole.RejectRole)
        self.install_button.clicked.connect(self.start)
        self.copy_button.clicked.connect(self.copy_command)
        self.close_button.clicked.connect(self.cancel_or_close)
        layout.addWidget(self.buttons)

    def command(self) -> str:
        if self.outcome is not None and self.outcome.command:
            return self.outcome.command
        return dependencies.manual_command(self.target, self.missing, self.cuda.isChecked(), self.python)

    def copy_command(self) -> None:
        QGuiApplication.clipboard().setText(self.command())
        self.status.setText("The command is on the clipboard: run it in a terminal, then click Extract buildings again.")

    def start(self) -> DependencyInstallTask:
        """Queue the installation (also what the Install button does); returns the task."""
        self.install_button.setEnabled(False)
        self.cpu.setEnabled(False)
        self.cuda.setEnabled(False)
        self.close_button.setText("Cancel")
        self.status.setText("Installing...")
        self.outcome = None
        self.task = DependencyInstallTask(self.target, self.missing, self.cuda.isChecked(), self.python)
        self.task.line.connect(self.add_line)
        self.task.progressChanged.connect(lambda value: self.progress.setValue(int(value)))
        self.task.done.connect(self.finish)
        QgsApplication.taskManager().addTask(self.task)
        return self.task

    def add_line(self, text: str) -> None:
        self.log.appendPlainText(text)
        QgsMessageLog.logMessage(text, LOG_TAG, Qgis.MessageLevel.Info)

    def cancel_or_close(self) -> None:
        if self.task is not None and self.outcome is None:
            self.status.setText("Cancelling...")
            self.task.cancel()
            return
        self.reject()

    def finish(self, outcome: dependencies.InstallResult) -> None:
        self.outcome = outcome
        self.task = None
        self.close_button.setText("Close")
        if outcome.ok:
            dependencies.activate(self.target)
            self.progress.setValue(100)
            self.status.setText(outcome.message + ("" if outcome.restart_needed else
                                                   " Click Extract buildings to start."))
            QgsMessageLog.logMessage(outcome.message, LOG_TAG, Qgis.MessageLevel.Success)
            self.installed.emit()
            return
        self.install_button.setEnabled(True)
        self.cpu.setEnabled(True)
        self.cuda.setEnabled(dependencies.has_nvidia_gpu())
        # The one failure message (what failed, pip's last lines, the command) goes at the end of the log.
        self.status.setText(outcome.message.split("\n\n")[0] + ("" if outcome.cancelled else
                            " See pip's last lines at the end of the log; Copy command copies the command."))
        self.status.setStyleSheet("" if outcome.cancelled else "color: #a00000;")
        if not outcome.cancelled:
            self.log.appendPlainText("\n" + outcome.message)
            self.log.verticalScrollBar().setValue(self.log.verticalScrollBar().maximum())
        QgsMessageLog.logMessage(outcome.message, LOG_TAG, Qgis.MessageLevel.Warning if outcome.cancelled
                                 else Qgis.MessageLevel.Critical)
