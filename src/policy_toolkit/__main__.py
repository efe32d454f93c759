import sys

from policy_toolkit.cli import main

sys.exit(main())
