"""``Finetuner``: the training loop, written out so it reads like the algorithm.

``fit`` does, for every optimizer step: gather ``gradient_accumulation_steps`` micro-batches,
forward, token-summed loss, backward, clip, step, schedule; then log, evaluate, checkpoint and
ask the callbacks whether to stop. ``accelerate`` supplies the devices, processes (DDP/FSDP),
mixed precision and data sharding; everything else is in the short private methods below.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from llama_lora.model.fused_lora import fused_lora_forward
from llama_lora.model.recompute import RecomputeDecision, set_recomputed_layers
from llama_lora.training import checkpoint as ckpt
from llama_lora.training import setup
from llama_lora.training.callbacks import Callback, CallbackList, EarlyStopping
from llama_lora.training.config import TrainingConfig
from llama_lora.training.fused_loss import (
    HiddenStateTap,
    fused_loss_head,
    linear_cross_entropy_sum,
    target_hidden_states,
)
from llama_lora.training.loss import (
    count_real_tokens,
    count_target_tokens,
    model_inputs,
    token_cross_entropy_sum,
    validation_loss,
)
from llama_lora.training.monitoring import Monitor, peak_memory_bytes
from llama_lora.training.optimization import build_optimizer, build_scheduler, trainable_parameters
from llama_lora.training.state import FitResult, IntervalSums, TrainState


@dataclass
class _Run:
    """Everything one ``fit`` call builds; dropped when it returns."""

    accelerator: Any
    model: torch.nn.Module
    optimizer: Any
    scheduler: Any
    train_loader: Any
    val_loader: Any
    trainable: list[torch.nn.Parameter]
    state: TrainState
    total_steps: int
    monitor: Monitor | None = None
    callbacks: CallbackList = field(default_factory=lambda: CallbackList(()))
    interval: IntervalSums | None = None
    last_eval_step: int = -1
    last_save_step: int = -1
    final_checkpoint: Path | None = None
    loss_head: torch.nn.Module | None = None
    """The frozen ``lm_head`` when the fused target-only loss applies (see ``fused_loss.py``)."""
    loss_tap: HiddenStateTap | None = None
    restore_attention: str | None = None
    """The attention implementation to put back when packed rows switched it."""
    recompute: RecomputeDecision | None = None
    """The ``gradient_checkpointing="auto"`` decision, undone when ``fit`` returns."""
    layer_patches: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    """peft's adapter-input casting (off under autocast) and the fused LoRA forward, switched
    for the run and back when done."""


class Finetuner:
    """Trains the adapters of a peft model on a tokenized ``DatasetDict``.

    Args:
        model: A peft model (``llama_lora.prepare_model``); only parameters with
            ``requires_grad`` are optimised.
        tokenizer: Its tokenizer (padding id, and the default collator).
        config: Run settings.
        callbacks: Extra ``Callback`` objects; early stopping is added from the config.
        data_collator: Turns a list of rows into tensors; default
            ``llama_lora.data.collator.DataCollator.for_model(tokenizer, model)`` (dynamic
            padding; block-diagonal masks for packed rows).

    Example:
        >>> model, tokenizer = prepare_model("tiny-llama")
        >>> data = build_dataset("sentiment", "sample", tokenizer)
        >>> result = Finetuner(model, tokenizer, TrainingConfig("runs/demo")).fit(data)
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        config: TrainingConfig,
        callbacks: Sequence[Callback] = (),
        data_collator: Any = None,
    ) -> None:
        if not isinstance(config, TrainingConfig):
            raise TypeError(f"config must be a TrainingConfig, got {type(config).__name__}")
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.callbacks = list(callbacks)
        self.data_collator = data_collator
        self._run: _Run | None = None

    # ------------------------------------------------------------------------- the loop

    def fit(
        self, data: Mapping[str, Any], resume_from_checkpoint: bool | str | Path | None = None
    ) -> FitResult:
        """Train on ``data["train"]``, evaluating on ``data["validation"]`` when present.

        Args:
            data: A ``DatasetDict`` (or mapping of splits) whose rows carry ``input_ids``,
                ``attention_mask``, ``labels`` (and ``position_ids`` when packed).
            resume_from_checkpoint: ``True`` resumes from the newest complete checkpoint in
                ``output_dir`` (starting fresh if there is none), a path resumes from that
                checkpoint, None/False starts fresh.

        Returns:
            A ``FitResult``.

        Raises:
            ValueError: no train split, missing columns, or early stopping without validation.
            FileNotFoundError: ``resume_from_checkpoint`` is a path but not a checkpoint.
            IntegrityError: a checkpoint file differs from its manifest.
            RuntimeError: ``max_consecutive_nonfinite`` steps in a row had a NaN/inf loss.
        """
        run = self._setup(data, resume_from_checkpoint)
        completed = False
        try:
            while not self._finished():
                for window in self._accumulation_windows():
                    outcome = self._train_step(window)  # forward, backward, clip, step
                    self._after_step(outcome, len(window))  # log, evaluate, save, callbacks
                    if self._finished():
                        break
            self._end_of_training()  # final evaluation and checkpoint
            completed = True
        finally:
            run.monitor.close(self._summary() if completed else None, run.state.history)
            self._release(run)
        return self._result(run)

    def _release(self, run: _Run) -> None:
        """Hand the model back as it came: ``prepare`` patched its ``forward`` with autocast,
        which would otherwise leak into evaluation, generation or a second ``fit``."""
        run.accelerator.unwrap_model(run.model, keep_fp32_wrapper=False)
        run.accelerator.free_memory()
        if run.loss_tap is not None:
            run.loss_tap.remove()
        if run.restore_attention is not None:
            _inner_model(self.model).set_attn_implementation(run.restore_attention)
        if run.recompute is not None:
            set_recomputed_layers(_inner_model(self.model), run.recompute.num_layers)
        run.layer_patches.close()
        self._run = None

    def _finished(self) -> bool:
        run = self._run
        return run.state.should_stop or run.state.step >= run.total_steps

    def _accumulation_windows(self) -> Iterator[list[dict[str, torch.Tensor]]]:
        """Micro-batches of the current epoch, grouped per optimizer step, from the saved
        data position (skipping batches deterministically after a resume)."""
        run, gas = self._run, self.config.gradient_accumulation_steps
        loader = run.train_loader
        loader.set_epoch(run.state.epoch)  # the shuffle is seeded by (seed, epoch)
        if run.state.batches_in_epoch:
            loader = run.accelerator.skip_first_batches(loader, run.state.batches_in_epoch)
            loader.set_epoch(run.state.epoch)
        window: list[dict[str, torch.Tensor]] = []
        for batch in loader:
            window.append(batch)
            if len(window) == gas:
                yield window
                window = []
        if window:  # the epoch's last, shorter window still makes one optimizer step
            yield window

    def _train_step(self, window: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
        """One optimizer step over ``window``; the loss is the mean over every target token of
        the window on every process (see ``loss.py`` for why)."""
        run, started = self._run, time.perf_counter()
        accelerator, model = run.accelerator, run.model
        model.train()
        local_targets = torch.stack([count_target_tokens(b["labels"]) for b in window]).sum()
        global_targets = accelerator.reduce(local_targets.clone(), reduction="sum").clamp(min=1)
        # DDP averages gradients over processes; multiplying by their number undoes that.
        scale = accelerator.num_processes / global_targets
        loss_sum = torch.zeros((), dtype=torch.float32, device=accelerator.device)
        real_tokens = torch.zeros((), dtype=torch.int64, device=accelerator.device)
        for index, batch in enumerate(window):
            with self._gradient_sync(last=index == len(window) - 1):
                batch_loss = self._forward_loss(batch)
                accelerator.backward(batch_loss * scale)
            loss_sum += batch_loss.detach()
            real_tokens += count_real_tokens(batch, self._pad_token_id())
        max_norm = self.config.max_grad_norm or math.inf  # inf: measure the norm, never clip
        grad_norm = accelerator.clip_grad_norm_(run.trainable, max_norm)
        finite = self._all_finite(loss_sum, grad_norm)  # the one host sync per step
        if finite:
            run.optimizer.step()
            if not accelerator.optimizer_step_was_skipped:  # fp16 loss scaler found inf grads
                run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
        return {
            "loss_sum": loss_sum,
            "target_tokens": local_targets,
            "real_tokens": real_tokens,
            "grad_norm": grad_norm,
            "finite": finite,
            "seconds": time.perf_counter() - started,
        }

    def _after_step(self, outcome: dict[str, Any], num_batches: int) -> None:
        """Advance the state, then log, evaluate, checkpoint and consult the callbacks."""
        run, config = self._run, self.config
        state = run.state
        epoch_ended = self._advance(outcome, num_batches)
        run.monitor.advance()
        if not outcome["finite"]:
            self._handle_nonfinite(outcome)
        at_end = state.step >= run.total_steps
        saving = self._due(config.save_steps, epoch_ended) or at_end
        record: dict[str, Any] = {}
        if state.step % config.logging_steps == 0 or saving:
            record = self._log_interval()
        if run.val_loader is not None and (self._due(config.eval_steps, epoch_ended) or at_end):
            self._evaluate()
        run.callbacks.on_step_end(state, record)
        if saving:
            self._save()

    # ------------------------------------------------------------------------- step pieces

    def _forward_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Summed next-token loss of one micro-batch (fp32).

        With a frozen head the logits are computed only at target positions, chunk by chunk
        (``fused_loss.py``); otherwise from the model's full logits. Same value either way.
        """
        run = self._run
        if run.loss_head is None:
            outputs = run.model(**model_inputs(batch))
            return token_cross_entropy_sum(outputs.logits, batch["labels"])
        # An empty index list: the head runs on no position at all (``logits_to_keep=1`` still
        # cost a (1, H, V) weight copy per step on CPU, 5% of a cpu-small step).
        no_position = batch["input_ids"].new_empty(0)
        run.model(**model_inputs(batch), logits_to_keep=no_position)
        rows, targets = target_hidden_states(run.loss_tap.pop(), batch["labels"])  # (N, H), (N,)
        with run.accelerator.autocast():
            return linear_cross_entropy_sum(rows, run.loss_head.weight, targets)

    def _gradient_sync(self, *, last: bool):
        """Skip the DDP all-reduce on every micro-batch but the window's last."""
        if last:
            return contextlib.nullcontext()
        return self._run.accelerator.no_sync(self._run.model)

    def _all_finite(self, loss_sum: torch.Tensor, grad_norm: torch.Tensor) -> bool:
        """True when the loss (and, without an fp16 loss scaler, the gradient norm) is finite
        on every process, so all processes agree on skipping."""
        accelerator = self._run.accelerator
        values = [loss_sum.float().reshape(())]
        if accelerator.scaler is None:  # with loss scaling, inf gradients are the scaler's job
            values.append(torch.as_tensor(grad_norm, device=loss_sum.device).float().reshape(()))
        bad = (~torch.isfinite(torch.stack(values))).any().to(torch.int64)
        if accelerator.num_processes > 1:
            bad = accelerator.reduce(bad, reduction="sum")
        return bool(bad.item() == 0)

    def _advance(self, outcome: dict[str, Any], num_batches: int) -> bool:
        """Move the step and the data position; True when this step ended an epoch."""
        run = self._run
        state, interval = run.state, run.interval
        state.step += 1
        state.batches_in_epoch += num_batches
        interval.real_tokens += outcome["real_tokens"]
        interval.seconds += outcome["seconds"]
        if outcome["finite"]:
            interval.loss_sum += outcome["loss_sum"].double()
            interval.target_tokens += outcome["target_tokens"].double()
            interval.grad_norm_sum += float(outcome["grad_norm"])
            interval.finite_steps += 1
            state.nonfinite_in_a_row = 0
        if state.batches_in_epoch < len(run.train_loader):
            return False
        state.epoch += 1
        state.batches_in_epoch = 0
        return True

    def _due(self, every: int | None, epoch_ended: bool) -> bool:
        """Whether a periodic action (eval, save) is due: every N steps, or per epoch."""
        return epoch_ended if every is None else self._run.state.step % every == 0

    def _handle_nonfinite(self, outcome: dict[str, Any]) -> None:
        """Count a skipped update; raise after too many in a row."""
        state, limit = self._run.state, self.config.max_consecutive_nonfinite
        state.nonfinite_steps += 1
        state.nonfinite_in_a_row += 1
        self._run.monitor.message(
            f"step {state.step}: non-finite loss or gradient norm "
            f"(grad norm {float(outcome['grad_norm']):.4g}); update skipped "
            f"({state.nonfinite_in_a_row} in a row, {state.nonfinite_steps} in total)"
        )
        if state.nonfinite_in_a_row >= limit:
            first = state.step - state.nonfinite_in_a_row + 1
            raise RuntimeError(
                f"training stopped at step {state.step}: the loss or gradient norm was NaN/inf "
                f"for {state.nonfinite_in_a_row} optimizer steps in a row (steps {first}-"
                f"{state.step}). Usual causes: fp16 overflow (use mixed_precision='bf16' or "
                f"'no'), a learning rate too high (now {self.config.learning_rate}; try 10x "
                f"lower or longer warm-up), or no gradient clipping (max_grad_norm). "
                f"Raise TrainingConfig.max_consecutive_nonfinite to tolerate more."
            )

    # ------------------------------------------------------------------------- log / eval / save

    def _log_interval(self) -> dict[str, Any]:
        """Synchronise the interval's sums across processes and log one train record."""
        run = self._run
        state, interval, accelerator = run.state, run.interval, run.accelerator
        totals = torch.stack([interval.loss_sum, interval.target_tokens, interval.real_tokens])
        loss_sum, targets, real_tokens = accelerator.reduce(totals, reduction="sum").tolist()
        state.train_tokens += int(real_tokens)
        state.train_seconds += interval.seconds
        steps = interval.finite_steps
        record = {
            "step": state.step,
            "epoch": self._fractional_epoch(),
            "train_loss": loss_sum / targets if targets else None,
            "learning_rate": run.scheduler.get_last_lr()[0],
            "grad_norm": interval.grad_norm_sum / steps if steps else None,
            "tokens_per_second": real_tokens / interval.seconds if interval.seconds else 0.0,
            "peak_memory_bytes": peak_memory_bytes(accelerator.device),
            "nonfinite_steps": state.nonfinite_steps,
        }
        run.interval = IntervalSums.zeros(accelerator.device)
        state.history.append(record)
        run.monitor.log(record)
        return record

    def _fractional_epoch(self) -> float:
        run = self._run
        return round(run.state.epoch + run.state.batches_in_epoch / len(run.train_loader), 4)

    def _evaluate(self) -> dict[str, Any]:
        """Validation loss (mean over target tokens) and perplexity; keeps ``best/``."""
        run, config = self._run, self.config
        state, accelerator, model = run.state, run.accelerator, run.model
        val_loss = validation_loss(accelerator, model, run.val_loader)
        record = {
            "step": state.step,
            "epoch": self._fractional_epoch(),
            "val_loss": val_loss,
            "val_perplexity": math.exp(min(val_loss, 700.0)),
        }
        best = state.best_val_loss
        threshold = config.early_stopping_threshold
        if math.isfinite(val_loss) and (best is None or val_loss < best - threshold):
            state.best_val_loss, state.best_step = val_loss, state.step
            state.evals_since_improvement = 0
            ckpt.save_best_adapter(accelerator, model, state, output_dir=config.output_dir)
        else:
            state.evals_since_improvement += 1
        run.last_eval_step = state.step
        state.history.append(record)
        run.monitor.log(record)
        run.callbacks.on_evaluate(state, record)
        return record

    def _save(self) -> Path:
        """Write ``checkpoint-<step>`` (once per step), rotate old ones, notify callbacks."""
        run, config = self._run, self.config
        if run.last_save_step == run.state.step:
            return run.final_checkpoint
        path = ckpt.save_checkpoint(
            run.accelerator,
            run.model,
            run.optimizer,
            run.scheduler,
            run.state,
            output_dir=config.output_dir,
            config=config.to_dict(),
        )
        if run.accelerator.is_main_process:
            ckpt.rotate_checkpoints(config.output_dir, config.save_total_limit)
        run.last_save_step, run.final_checkpoint = run.state.step, path
        run.callbacks.on_save(run.state, path)
        return path

    def _end_of_training(self) -> None:
        """Final evaluation (unless the last step was just evaluated) and final checkpoint."""
        run = self._run
        if run.val_loader is not None and run.last_eval_step != run.state.step:
            self._evaluate()
        if run.interval.finite_steps or run.interval.seconds:
            self._log_interval()
        self._save()

    # ------------------------------------------------------------------------- setup

    def _setup(self, data: Mapping[str, Any], resume: bool | str | Path | None) -> _Run:
        """Accelerator, data, optimizer and schedule, all prepared; then the run state."""
        from accelerate.utils import set_seed

        config = self.config
        accelerator = setup.build_accelerator(config)
        train_split, val_split = setup.select_splits(data, config)
        resume_dir = setup.resolve_resume(resume, config.output_dir)
        set_seed(config.seed)
        restore_attention = self._use_packed_attention(train_split)
        recompute = setup.choose_recomputation(self.model, accelerator, train_split, config)
        try:
            run = self._prepare_run(accelerator, train_split, val_split, resume_dir)
        except BaseException:
            # Hand the model back untouched: no autocast-patched forward, no switched attention,
            # every block checkpointed again.
            accelerator.unwrap_model(self.model, keep_fp32_wrapper=False)
            if restore_attention is not None:
                _inner_model(self.model).set_attn_implementation(restore_attention)
            if recompute is not None:
                set_recomputed_layers(_inner_model(self.model), recompute.num_layers)
            raise
        run.restore_attention, run.recompute = restore_attention, recompute
        if accelerator.mixed_precision in ("bf16", "fp16"):
            run.layer_patches.enter_context(_autocast_adapter_inputs(self.model))
        if self.config.fused_lora:
            run.layer_patches.enter_context(fused_lora_forward(self.model))
        fused = self._fused_loss_head(accelerator)
        if fused is not None:  # last: nothing after it can fail and leak the hook
            decoder, run.loss_head = fused
            run.loss_tap = HiddenStateTap(decoder)
        self._run = run
        return run

    def _fused_loss_head(self, accelerator):
        """The frozen head for the fused loss, unless disabled or under FSDP (whose parameters
        are sharded outside the forward pass, so the head's weight is not whole there)."""
        from accelerate.utils import DistributedType

        if not self.config.fused_loss or accelerator.distributed_type == DistributedType.FSDP:
            return None
        return fused_loss_head(self.model)

    def _prepare_run(self, accelerator, train_split, val_split, resume_dir) -> _Run:
        """Loaders, optimizer, ``accelerator.prepare`` and the schedule; then the run state."""
        config = self.config
        collator = self.data_collator or self._default_collator()
        train_loader, val_loader = setup.build_dataloaders(train_split, val_split, config, collator)
        optimizer = build_optimizer(
            config.optimizer,
            trainable_parameters(self.model),
            learning_rate=config.learning_rate,
            weight_decay=config.weight_decay,
        )
        if resume_dir is not None:  # before prepare, so DDP/FSDP distribute restored weights
            ckpt.load_adapter_weights(self.model, resume_dir)
        setup.adapt_fsdp_plugin(accelerator, self.model)
        model, optimizer, train_loader = accelerator.prepare(self.model, optimizer, train_loader)
        val_loader = accelerator.prepare(val_loader) if val_loader is not None else None
        steps = setup.total_steps(config, len(train_loader))
        # Not passed to prepare(): accelerate would step it once per process, assuming a total
        # counted on the unsharded loader; ours is counted on the sharded one.
        scheduler = build_scheduler(
            config.lr_scheduler,
            optimizer.optimizer,
            total_steps=steps,
            warmup_ratio=config.warmup_ratio,
        )
        prepared = (accelerator, model, optimizer, scheduler, train_loader, val_loader)
        return self._start_run(*prepared, total_steps=steps, resume_dir=resume_dir)

    def _start_run(
        self,
        accelerator,
        model,
        optimizer,
        scheduler,
        train_loader,
        val_loader,
        *,
        total_steps: int,
        resume_dir: Path | None,
    ) -> _Run:
        """The run state, fresh or restored from ``resume_dir``, and its monitor."""
        if resume_dir is not None:
            state = setup.restore_progress(
                resume_dir, accelerator, model, optimizer, scheduler, self.config
            )
        else:
            state = TrainState(world_size=accelerator.num_processes)
            state.is_main_process = accelerator.is_main_process
        run = _Run(
            accelerator=accelerator,
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            train_loader=train_loader,
            val_loader=val_loader,
            trainable=setup.clip_parameters(accelerator, model),
            state=state,
            total_steps=total_steps,
            callbacks=CallbackList(self._all_callbacks()),
            interval=IntervalSums.zeros(accelerator.device),
            last_eval_step=max((r["step"] for r in state.history if "val_loss" in r), default=-1),
            last_save_step=state.step if resume_dir is not None else -1,
            final_checkpoint=resume_dir,
        )
        run.monitor = Monitor(
            self.config.output_dir,
            enabled=accelerator.is_main_process,
            report_to=self.config.report_to,
            progress_bar=self.config.progress_bar,
            total_steps=total_steps,
            history=state.history,
        )
        if resume_dir is not None:  # last: nothing after this may draw random numbers
            ckpt.restore_rank_rng_state(resume_dir, accelerator.process_index)
        return run

    def _use_packed_attention(self, train_split) -> str | None:
        """Train packed rows with padding-free attention (one causal SDPA call per example)
        instead of SDPA over the whole row with a block mask: the same result, a fraction of
        the attention work (``llama_lora/model/packed_attention.py``). Returns the
        implementation to restore afterwards, or None when nothing changed."""
        inner = _inner_model(self.model)
        current = getattr(getattr(inner, "config", None), "_attn_implementation", None)
        packed = "position_ids" in (getattr(train_split, "column_names", None) or ())
        if not packed or current != "sdpa" or self.data_collator is not None:
            return None
        from llama_lora.model.packed_attention import register_packed_sdpa

        inner.set_attn_implementation(register_packed_sdpa())
        return current

    def _default_collator(self):
        from llama_lora.data.collator import DataCollator

        return DataCollator.for_model(self.tokenizer, self.model)

    def _all_callbacks(self) -> list[Callback]:
        callbacks = list(self.callbacks)
        if self.config.early_stopping_patience is not None:
            callbacks.append(EarlyStopping(self.config.early_stopping_patience))
        return callbacks

    def _pad_token_id(self) -> int | None:
        pad = getattr(self.tokenizer, "pad_token_id", None)  # the collator's choice, in order
        return pad if pad is not None else getattr(self.tokenizer, "unk_token_id", None)

    # ------------------------------------------------------------------------- results

    def _result(self, run: _Run) -> FitResult:
        state = run.state
        best = self.config.output_dir / ckpt.BEST_DIR if state.best_step is not None else None
        return FitResult(
            history=list(state.history),
            best_checkpoint=best,
            final_checkpoint=run.final_checkpoint,
            train_tokens=state.train_tokens,
            tokens_per_second=state.tokens_per_second(),
            peak_memory_bytes=peak_memory_bytes(run.accelerator.device),
            stopped_early=state.stopped_early,
            global_step=state.step,
            best_val_loss=state.best_val_loss,
        )

    def _summary(self) -> dict[str, Any]:
        """``summary.json``: the result's numbers plus how the run was set up."""
        run = self._run
        result = asdict(self._result(run))
        del result["history"]
        extra = {"epoch": self._fractional_epoch(), "best_step": run.state.best_step}
        extra |= {"train_seconds": round(run.state.train_seconds, 3)}
        extra |= {"nonfinite_steps": run.state.nonfinite_steps}
        extra |= {"mixed_precision": run.accelerator.mixed_precision}
        extra |= {"num_processes": run.accelerator.num_processes}
        return {key: str(v) if isinstance(v, Path) else v for key, v in (result | extra).items()}


def _autocast_adapter_inputs(model: torch.nn.Module):
    """Leave each adapter's input in the compute dtype instead of peft's cast to the fp32
    adapter dtype: under autocast the matmul casts it straight back, so the cast, its
    backward and LoRA dropout in fp32 only moved memory (median step 0.637 -> 0.566 s on the
    cpu-small data with LoRA dropout, ``benchmarks/levers.py``). The values are the same:
    bf16 -> fp32 -> bf16 is exact, and dropout scales and rounds once either way. Only peft's
    own switch is used."""
    from peft.helpers import disable_input_dtype_casting

    return disable_input_dtype_casting(model)


def _inner_model(model: torch.nn.Module) -> torch.nn.Module:
    """The ``transformers`` model inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model
