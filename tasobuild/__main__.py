import sys

from tasobuild.cli import main

sys.exit(main())
