"""The generic tiny-model kit every task's default model is built with, written once.

- `cache`: the keyed, locked, atomic build cache under `model.cache_dir`.
- `tokenizer`: a byte-level BPE trained on a task's own text.
- `pretrain`: a tiny GPT-2, its completion-only pre-training loop, and a KV-cached sampler.
- `recipe`: the whole build (tokenizer, model, pre-training, report, `build_info.json`) for a
  task that supplies its texts, its examples and its report.
"""
