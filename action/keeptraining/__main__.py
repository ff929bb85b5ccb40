from keeptraining.cli import entrypoint

entrypoint()
