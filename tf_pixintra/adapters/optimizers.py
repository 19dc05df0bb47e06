"""Optimizers of the AdaptSegNet family: SGD for G, Adam for each D, poly decay.

As in PyTorch, weight decay is coupled L2 (Keras' `weight_decay` is decoupled): the adapters add
0.5 * wd * sum(w^2) to G's loss. The heads' 10x LR is a 10x gradient (L2 included), the same for
SGD with momentum. Keras SGD keeps momentum in units of lr * g, PyTorch in g: under poly decay they
differ by a relative 1e-5 per step (250k steps).
"""

import keras


def poly_schedule(base_lr, decay_steps, power=0.9):
    """lr(step) = base_lr * (1 - step / decay_steps) ** power (then 0)."""
    return keras.optimizers.schedules.PolynomialDecay(
        initial_learning_rate=base_lr, decay_steps=max(1, int(decay_steps)), end_learning_rate=0.0,
        power=power)


def generator_optimizer(base_lr, decay_steps, optim_cfg, mixed_precision):
    """SGD(momentum) with poly decay, loss-scaled under mixed_float16."""
    opt = keras.optimizers.SGD(
        learning_rate=poly_schedule(base_lr, decay_steps, optim_cfg.poly_power),
        momentum=optim_cfg.momentum, name="sgd_generator")
    return _maybe_loss_scale(opt, mixed_precision)


def discriminator_optimizer(lr_d, decay_steps, optim_cfg, mixed_precision, name):
    """Adam(lr_d, betas (0.9, 0.99), eps 1e-8 as PyTorch) with poly decay."""
    opt = keras.optimizers.Adam(
        learning_rate=poly_schedule(lr_d, decay_steps, optim_cfg.poly_power),
        beta_1=optim_cfg.adam_beta1, beta_2=optim_cfg.adam_beta2, epsilon=1e-8, name=name)
    return _maybe_loss_scale(opt, mixed_precision)


def _maybe_loss_scale(opt, mixed_precision):
    if mixed_precision == "mixed_float16":
        return keras.optimizers.LossScaleOptimizer(opt, name=opt.name + "_ls")
    return opt
