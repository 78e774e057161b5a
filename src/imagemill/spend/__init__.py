"""Spend controls: what a request will cost (``estimates``), and the budgets that cap
what a key or an owner may spend per period (``budgets``; the SQL is ``db/budgets.py``).

Submit calls this package once per request: every job that will call a model reserves
its estimate against the caller's budgets in the transaction that records it, and the
reservation is settled (the real cost) or released (failed, canceled) in the
transaction that ends the job.
"""
