"""``python -m whatsapp_api_simulator``: serve a simulated fleet until interrupted."""

from whatsapp_api_simulator.cli import main

if __name__ == "__main__":
    main()
