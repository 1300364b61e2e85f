"""``python -m worker.simulator``: serve the OneRoster simulator."""

from worker.simulator.server import main

main()
