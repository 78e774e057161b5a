"""Fake provider servers, written from each provider's public API reference.

Each is an ASGI app that the tests run on a real socket (``server.serve``) and drive
through the provider's official SDK, with faults injected on demand (``faults.Faults``).

- ``openai_images`` (``FakeOpenAI``) with ``openai_models`` (what each model accepts) and,
  on the same base URL, Chat Completions: ``openai_chat`` with ``openai_messages``;
  ``recraft`` (``FakeRecraft``); ``gemini`` (``FakeGemini``) with ``gemini_text`` (its
  text models) and ``gemini_requests`` (what its endpoints share); ``replicate``
  (``FakeReplicate``) with ``replicate_models``, ``replicate_catalogue`` and
  ``replicate_webhooks``.
- Shared: ``server`` (``serve``, ``serve_here``, ``Plug``), ``faults`` (``Faults``,
  ``inject_fault``), ``images`` (deterministic pictures), ``blobs`` (signed URLs that
  expire), ``calls`` (recorded requests, bearer tokens), ``structured`` (answers that
  conform to a JSON Schema, for the text fakes).
"""
