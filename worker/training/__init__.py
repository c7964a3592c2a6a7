"""The training worker: fine-tunes or trains model versions from uploaded archives, on
TRAINING_QUEUE, one job at a time.

    celery -A worker.training.app worker
"""
