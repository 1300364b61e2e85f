"""The read API (FastAPI on uvicorn): ``uvicorn worker.api.app:create_app --factory``."""
