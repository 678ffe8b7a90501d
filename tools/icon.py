"""Draw imagegate's icon at any size from its shapes (a framed landscape with a sun on a navy tile):
the 64 px one inlined in serverInfo (server/imagegate/icon.png) and the 512 px one the MCPB manifest
points at (server/icon-512.png, as MCPB recommends). Supersampled 4x, then scaled down.

    python -m tools.icon            # rewrite both files
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
NAVY, FRAME, SUN, HILLS = (35, 48, 84, 255), (240, 240, 240, 255), (250, 210, 90, 255), (120, 200, 160, 255)
TARGETS = {64: ROOT / "server" / "imagegate" / "icon.png", 512: ROOT / "server" / "icon-512.png"}


def draw(size: int) -> Image.Image:
    """The icon, `size` pixels square; the geometry is in 64ths of the edge, as the original design."""
    big = size * 4
    u = big / 64
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    pen = ImageDraw.Draw(image)
    pen.rounded_rectangle((1 * u, 1 * u, 63 * u, 63 * u), radius=10 * u, fill=NAVY)
    pen.rectangle((11 * u, 16 * u, 54 * u, 49 * u), outline=FRAME, width=round(4 * u))
    pen.ellipse((39 * u, 18 * u, 48 * u, 27 * u), fill=SUN)
    pen.polygon([(16 * u, 46 * u), (28 * u, 28 * u), (40 * u, 46 * u)], fill=HILLS)
    pen.polygon([(30 * u, 46 * u), (42 * u, 32 * u), (50 * u, 46 * u)], fill=HILLS)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def main() -> int:
    for size, path in TARGETS.items():
        draw(size).save(path, optimize=True)
        print(f"{path.relative_to(ROOT)} ({size} px)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
