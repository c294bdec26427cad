"""The live window: pygame-ce (SDL2, bundled in its wheels for Linux, macOS and Windows).

The pinned OpenCV is the headless build (albumentations requires it), so cv2.imshow opens no
window anywhere; SDL does, with no second install step. The frame is shown at the window's size
with its aspect kept (black bars), the window can be resized, and keys steer the live loop.
"""

import os
import sys

import cv2
import numpy as np

from lib.live.sinks import DisplayUnavailable, Sink, as_bgr

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # no banner on stdout at import
try:
    import pygame
except ImportError:  # the window is optional for --no-display runs
    pygame = None

# key -> command; LiveLoop acts on the commands (webcam.py's --help and the README list them)
KEYS = {
    "escape": "quit",
    "q": "quit",
    "m": "mode",
    "tab": "mode",
    "+": "stronger",
    "=": "stronger",
    "up": "stronger",
    "[+]": "stronger",
    "-": "weaker",
    "down": "weaker",
    "[-]": "weaker",
    "s": "smooth",
    "f": "stats",
}
TITLE = "person-seg: m mode, +/- blur, s smoothing, f FPS, q quits"


class Display(Sink):
    """A resizable window; `quit` turns true on Esc, q or closing it; `commands()` gives the other keys."""

    def __init__(self, title: str = TITLE):
        if pygame is None:
            raise DisplayUnavailable("pygame-ce is not installed: pip install pygame-ce")
        linux_desktop = any(os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"))
        if sys.platform.startswith("linux") and not linux_desktop:  # SDL would try and print its own errors
            raise DisplayUnavailable("no screen: DISPLAY and WAYLAND_DISPLAY are not set")
        try:
            pygame.display.init()  # not pygame.init(): that opens audio too (ALSA errors without a sound card)
        except pygame.error as error:
            raise DisplayUnavailable(f"SDL cannot open a display: {error}") from None
        if pygame.display.get_driver() in ("dummy", "offscreen") and not os.environ.get("SDL_VIDEODRIVER"):
            pygame.display.quit()
            raise DisplayUnavailable("no screen (SDL found only its offscreen driver)")
        info = pygame.display.Info()
        self.desktop = (info.current_w, info.current_h)  # before set_mode: the screen's size
        self.title, self.screen, self.quit = title, None, False
        self.pending: list[str] = []

    def _open(self, width: int, height: int) -> None:
        if self.desktop[0] > 0 and self.desktop[1] > 0:  # a first size that fits on the screen
            scale = min(1.0, 0.9 * self.desktop[0] / width, 0.9 * self.desktop[1] / height)
            width, height = max(1, round(width * scale)), max(1, round(height * scale))
        try:
            self.screen = pygame.display.set_mode((width, height), pygame.RESIZABLE)
        except pygame.error as error:
            raise DisplayUnavailable(f"SDL cannot open a window: {error}") from None
        pygame.display.set_caption(self.title)

    def write(self, image: np.ndarray, name: str) -> None:
        image = as_bgr(image)
        if self.screen is None:
            self._open(image.shape[1], image.shape[0])
        self.poll()
        surface = pygame.display.get_surface()
        fitted, (left, top) = fit_into(image, surface.get_size())
        frame = pygame.image.frombuffer(fitted.data, (fitted.shape[1], fitted.shape[0]), "BGR")
        if (left, top) != (0, 0):
            surface.fill((0, 0, 0))
        surface.blit(frame, (left, top))
        pygame.display.flip()

    def poll(self) -> None:
        """Read the window's events: quit, or keys for commands()."""
        for event in pygame.event.get():
            if event.type in (pygame.QUIT, pygame.WINDOWCLOSE):
                self.quit = True
            elif event.type == pygame.KEYDOWN:
                command = KEYS.get(event.unicode) or KEYS.get(pygame.key.name(event.key))
                if command == "quit":
                    self.quit = True
                elif command:
                    self.pending.append(command)

    def commands(self) -> list[str]:
        pending, self.pending = self.pending, []
        return pending

    def close(self, ok: bool = True) -> None:
        if pygame is not None and pygame.display.get_init():
            pygame.display.quit()
        self.screen = None


def fit_into(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """The image scaled to fit (width, height) with its aspect kept, and where it sits, centred."""
    height, width = image.shape[:2]
    scale = min(size[0] / width, size[1] / height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    if (new_w, new_h) != (width, height):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return np.ascontiguousarray(image), ((size[0] - new_w) // 2, (size[1] - new_h) // 2)
