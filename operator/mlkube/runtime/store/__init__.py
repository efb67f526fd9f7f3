"""Object storage (the S3 API) for the model store, the inference log and drift reports.

A store on a PersistentVolumeClaim needs a ReadWriteMany volume as soon as predictors run
on more than one node; an ``s3://bucket/prefix`` store needs none. This package holds
everything the runtime knows about S3, so the trainer, the server and the drift checker
only pass locations around: ``s3`` (locations, the client from the standard AWS
environment, bounded reads and conditional writes, errors without credentials),
``versions`` (a version committed by its ``metadata.json``, fetched and verified) and
``logsink`` (batched, compressed inference-log objects).
"""
