"""Small Qt widgets: a frame view that scales a BGR image to fit, and numpy -> QImage."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QLabel, QSizePolicy


def to_qimage(image: np.ndarray) -> QImage:
    """BGR ``uint8`` ``(H, W, 3)`` (or grey ``(H, W)``) -> an independent ``QImage``."""
    img = np.ascontiguousarray(image)
    if img.ndim == 2:
        h, w = img.shape
        return QImage(img.data, w, h, img.strides[0], QImage.Format.Format_Grayscale8).copy()
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected a BGR uint8 (H, W, 3) image, got {img.dtype} {img.shape}")
    h, w, _ = img.shape
    return QImage(img.data, w, h, img.strides[0], QImage.Format.Format_BGR888).copy()


class FrameView(QLabel):
    """Shows the last image given to :meth:`set_image`, scaled to the widget keeping its aspect.

    Accepts dropped files when ``accept_drops``; emits ``file_dropped(path)``.
    """

    file_dropped = Signal(str)

    def __init__(self, placeholder: str = "", accept_drops: bool = False) -> None:
        super().__init__(placeholder)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(320, 200)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setStyleSheet("background: #202020; color: #c0c0c0;")
        self._image: QImage | None = None
        self.setAcceptDrops(accept_drops)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt name
        return QSize(800, 480)

    def set_image(self, image: np.ndarray) -> None:
        self._image = to_qimage(image)
        self._rescale()

    def image(self) -> QImage | None:
        return self._image

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt name
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._image is None:
            return
        pix = QPixmap.fromImage(self._image).scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio,
                                                     Qt.TransformationMode.SmoothTransformation)
        self.setPixmap(pix)

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt name
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt name
        urls = [u for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.file_dropped.emit(urls[0].toLocalFile())
            event.acceptProposedAction()
