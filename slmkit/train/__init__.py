"""Training: the shared loop and numerics (``loop``, ``losses``, ``batching``, ``checkpoint``) and one
module per method (``sft`` now; distillation and preference methods add theirs)."""
