"""The vllm backend: a task's requests sent to a running OpenAI-compatible server. The class is in :mod:`.backend`
(registered as an entry point); the parts it wires together each have their own module, named for what they hold."""
