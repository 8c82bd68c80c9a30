"""Small Qt widgets: a frame view that scales a BGR image to fit, a seek slider, and numpy -> QImage."""
from __future__ import annotations

import os
from urllib.parse import unquote_to_bytes, urlsplit

import numpy as np
from PySide6.QtCore import QSize, Qt, QUrl, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QLabel, QSizePolicy, QSlider, QStyle, QStyleOptionSlider


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

    file_dropped = Signal(object)  # str path, non-UTF-8 bytes kept as Python keeps them (surrogates)

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
            self.file_dropped.emit(local_path(urls[0]))
            event.acceptProposedAction()


def local_path(url: QUrl) -> str:
    """The file path of a ``file:`` URL with its exact bytes: the URL's percent-encoding holds
    them, whereas ``toLocalFile()`` decodes them as UTF-8 and replaces what is not."""
    raw = bytes(url.toEncoded().data()).decode("ascii", "replace")
    return os.fsdecode(unquote_to_bytes(urlsplit(raw).path))


class SeekSlider(QSlider):
    """A horizontal slider on which a click on the groove jumps to the clicked frame (and emits
    ``jumped(value)``) instead of moving one page; dragging the handle works as usual."""

    jumped = Signal(int)

    def __init__(self) -> None:
        super().__init__(Qt.Orientation.Horizontal)

    def value_at(self, x: float) -> int:
        """The value under widget x-coordinate ``x`` (px)."""
        opt = QStyleOptionSlider()
        self.initStyleOption(opt)
        style = self.style()
        groove = style.subControlRect(QStyle.ComplexControl.CC_Slider, opt, QStyle.SubControl.SC_SliderGroove, self)
        handle = style.subControlRect(QStyle.ComplexControl.CC_Slider, opt, QStyle.SubControl.SC_SliderHandle, self)
        span = max(1, groove.width() - handle.width())
        pos = int(round(x - groove.x() - handle.width() / 2))
        return QStyle.sliderValueFromPosition(self.minimum(), self.maximum(), min(max(pos, 0), span), span)

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt name
        if event.button() == Qt.MouseButton.LeftButton and self.isEnabled():
            opt = QStyleOptionSlider()
            self.initStyleOption(opt)
            handle = self.style().subControlRect(QStyle.ComplexControl.CC_Slider, opt, QStyle.SubControl.SC_SliderHandle, self)
            if not handle.contains(event.position().toPoint()):
                value = self.value_at(event.position().x())
                self.setValue(value)
                self.jumped.emit(value)
                event.accept()
                return
        super().mousePressEvent(event)
