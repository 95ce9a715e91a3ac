import sys

from facecheck.cli import main

sys.exit(main())
