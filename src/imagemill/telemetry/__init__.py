"""What operators watch: Prometheus metrics (``metrics``), fed by the events each
process's own transactions commit, and the log lines of ``imagemill.logs``."""
