"""``python -m facetrack``: the same as the ``facetrack`` command."""
import sys

from facetrack.cli.main import main

sys.exit(main())
