"""Durable jobs: the state machine, the service that submits and finishes jobs, workers, sweeper."""
