"""Training benchmarks: llama_lora's ``Finetuner`` against HF ``Trainer`` + PEFT and TRL.

Run ``python benchmarks/bench_train.py --help`` (or ``llama-lora bench --help``); see
``benchmarks/README.md`` for what is measured and how the comparison is kept fair.
"""
