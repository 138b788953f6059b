import sys

from subprobe.cli import main

sys.exit(main())
