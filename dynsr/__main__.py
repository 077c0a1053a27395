import sys

from dynsr.cli.main import main

sys.exit(main())
