"""Every use of a private (underscored or undocumented) Paddle API, in one place, one comment per use.

Tested with the paddlepaddle range pinned in setup.py (3.3.x); a Paddle upgrade that renames one of these
breaks a test of tests/test_reliability.py or tests/test_trainer.py that exercises it through the real object
(``paddle.amp.GradScaler``, ``paddle.get_rng_state``, fleet's sharding optimizer), not a fake.
"""
from __future__ import annotations


def generator_state_to_json(state) -> list:
    # paddle's GeneratorState (pybind) exposes its content only through the pickle protocol:
    # __getstate__() -> (device, seed, offset, [bytes of the engine state as ints]).
    device, seed, offset, engine = state.__getstate__()
    return [int(device), int(seed), int(offset), [int(b) for b in engine]]


def generator_state_from_json(data: list):
    import paddle

    # The inverse through __setstate__ on an uninitialised GeneratorState (the way pickle rebuilds it).
    cls = type(paddle.get_rng_state("cpu")[0])
    state = cls.__new__(cls)
    device, seed, offset, engine = data
    state.__setstate__((int(device), int(seed), int(offset), list(engine)))
    return state


def scaler_counters(scaler) -> dict:
    """loss scale and good/bad step counters of a ``paddle.amp.GradScaler`` (no public getters for them)."""
    return {
        "loss_scaling": float(scaler._scale.numpy().reshape(-1)[0]),  # private: the current loss scale tensor
        "num_good_steps": int(scaler._incr_count),  # private: finite steps since the last scale increase
        "num_bad_steps": int(scaler._decr_count),  # private: non-finite steps since the last decrease
    }


def scaler_found_inf(scaler) -> bool:
    # private: set by GradScaler.step()/unscale_() when the gradients held inf/nan (the step was skipped)
    return bool(getattr(scaler, "_cache_found_inf", False))


def wrap_sharding_grad_sync(optimizer, after_sync) -> None:
    """Call ``after_sync(owned_parameters)`` right after fleet's sharding-stage-1 optimizer has reduced each
    gradient to its owner rank and before it clips and steps (there is no public hook for that moment)."""
    sync = optimizer._hybrid_sync_grad  # private: HybridParallelOptimizer's gradient reduction

    def sync_then_call(parameter_list):
        sync(parameter_list)
        # private: the inner DygraphShardingOptimizer and the hybrid communicate group, to select this
        # rank's parameters the way fleet does
        after_sync(optimizer._inner_opt.filter_parameters(parameter_list, optimizer._hcg))

    optimizer._hybrid_sync_grad = sync_then_call  # private: replaced on this optimizer instance only


def grads_synced(model) -> bool:
    """False while a backward pass would skip the data-parallel gradient all-reduce (inside ``no_sync``)."""
    # undocumented: paddle.DataParallel's flag that no_sync() clears; other models have none (always synced)
    return bool(getattr(model, "grad_need_sync", True))
