import sys

from sokhan.cli import main

sys.exit(main())
