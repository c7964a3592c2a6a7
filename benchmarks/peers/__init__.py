"""Peers: the same model, the same preprocessing and the same TensorFlow call, served by
another system, so the benchmark can put the service beside it under the same load generator
(benchmarks/load.py). Optional: `pip install -c constraints.txt -e '.[peers]'`, then
`make bench ARGS=--peers`.

    ray_serve.py   Ray Serve, one replica, @serve.batch
    ray_async.py   Ray Serve's asynchronous inference: an ingress enqueues through the Celery
                   adapter on a redis-server, a @task_consumer runs the model, the ingress polls
"""
