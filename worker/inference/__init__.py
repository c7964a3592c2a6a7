"""The inference worker: one Celery process per GPU (or one on the CPU) serving the models.

    celery -A worker.inference.app worker      (python -m worker.launch starts one per GPU)
"""
