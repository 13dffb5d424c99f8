"""The event processor: reads S3 event notifications from SQS and confirms uploads through
the upload coordinator's internal RPC. It owns no tables, only its position in the queue."""
