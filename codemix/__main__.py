import sys

from codemix.main import main

sys.exit(main())
