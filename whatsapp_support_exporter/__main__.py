"""``python -m whatsapp_support_exporter``: the same program as the console script."""

from whatsapp_support_exporter.cli.main import main

if __name__ == "__main__":
    main()
