"""Pre-commit guard: refuse files above a size limit (videos and weights go to DVC/S3, never git)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-kb", type=int, default=1024)
    parser.add_argument("files", nargs="*")
    args = parser.parse_args(argv)
    too_big = [f for f in args.files if Path(f).is_file() and Path(f).stat().st_size > args.max_kb * 1024]
    for name in too_big:
        size_kb = Path(name).stat().st_size // 1024
        print(f"{name}: {size_kb} KB > {args.max_kb} KB; track it with `dvc add` or store it on S3")
    return 1 if too_big else 0


if __name__ == "__main__":
    sys.exit(main())
