"""What receives: the inference task's Celery strategy (what the consumer calls for each
message). Celery's default strategy runs one task per message; this one turns each message
into Celery's own request object, collects the burst that shared/broker/patch.py's take
delivered in one go, and hands it to the batcher once the loop has delivered it all, so
the model thread sees whole bursts. Messages with an ETA or a countdown are not held back
(ours have none)."""

from collections.abc import Callable

from celery import signals
from celery.utils.imports import symbol_by_name
from celery.worker.request import create_request_cls
from celery.worker.strategy import hybrid_to_proto2, proto1_to_proto2

from worker.inference.reporting import FlowerReport


class Receiving:
    def __init__(self, task, app, consumer, hand_over: Callable[[list], None], report: FlowerReport):
        self.task, self.app, self.consumer = task, app, consumer
        self.hand_over, self.report = hand_over, report
        self._Request = create_request_cls(symbol_by_name(task.Request), task, consumer.pool, consumer.hostname,
                                           consumer.event_dispatcher, app=app)
        self._burst: list = []

    def __call__(self, message, body, ack, reject, callbacks, **kwargs) -> None:
        # As celery.worker.strategy.default reads a message of any protocol.
        if body is None and "args" not in message.payload:
            body, headers, decoded, utc = message.body, message.headers, False, self.app.uses_utc_timezone()
        elif "args" in message.payload:
            body, headers, decoded, utc = hybrid_to_proto2(message, message.payload)
        else:
            body, headers, decoded, utc = proto1_to_proto2(message, body)
        consumer = self.consumer
        request = self._Request(
            message, on_ack=ack, on_reject=reject, app=self.app, hostname=consumer.hostname,
            eventer=consumer.event_dispatcher, task=self.task, connection_errors=consumer.connection_errors,
            body=body, headers=headers, decoded=decoded, utc=utc,
        )
        signals.task_received.send(sender=consumer, request=request)
        self.report.received(request.id, self.task.name)
        first = not self._burst
        self._burst.append(request)
        if first:
            hub = consumer.hub
            if hub is not None:
                hub.call_soon(self._hand_over)  # after the loop delivered the whole burst
            else:
                self._hand_over()

    def _hand_over(self) -> None:
        burst, self._burst = self._burst, []
        self.hand_over(burst)
