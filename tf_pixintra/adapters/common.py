"""What both adapters share: a generator G, two discriminators, three optimizers.

`generator_update` and `discriminator_update` hold the replica and loss
scaling, L2 and head learning-rate rules of the subclasses' `train_step`.
"""

import keras
import tensorflow as tf

from tf_pixintra import compat
from tf_pixintra.adapters import diagnostics
from tf_pixintra.models import head_variables
from tf_pixintra.models import split_outputs

_MODELS = ("generator", "d_main", "d_aux")  # serialised in get_config


def upsample(logits, size):
    """Bilinear resize of stride-8 logits to `size` (the input size), float32."""
    if logits is None:
        return None
    return tf.cast(tf.image.resize(logits, size, method="bilinear"), tf.float32)


def replicas():
    """Number of replicas of the current tf.distribute strategy."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def replica_share(labels=None, ignore_label=255):
    """This replica's weight in a global mean, so summed gradients are exact: 1/R for a mean over
    all pixels, n_local / n_global for a mean over the pixels whose label != ignore_label."""
    if labels is None:
        return 1.0 / replicas()
    local = tf.reduce_sum(tf.cast(
        tf.not_equal(tf.cast(labels, tf.int32), ignore_label), tf.float32))
    context = tf.distribute.get_replica_context()
    total = context.all_reduce(tf.distribute.ReduceOp.SUM, local)
    return tf.stop_gradient(local / tf.maximum(total, 1.0))


class AdversarialAdapter(compat.PrebuiltModel):
    """Base of the Stage I and Stage II adapters (custom `train_step`). diag_every: G steps between
    measures of the adversarial share of G's gradient (one extra backward pass); 0 = never."""

    # get_config's plain values (subclasses add theirs).
    CONFIG_KEYS = ("lambda_seg_aux", "weight_decay", "head_lr_mult", "diag_every")

    def __init__(self, generator, d_main, d_aux, *, lambda_seg_aux=0.1,
                 weight_decay=5e-4, head_lr_mult=10.0, diag_every=0, **kwargs):
        super().__init__(**kwargs)
        self.lambda_seg_aux = float(lambda_seg_aux)
        self.diag_every = int(diag_every)
        self.generator = generator
        self.d_main = d_main
        self.d_aux = d_aux
        self.weight_decay = float(weight_decay)
        self.head_lr_mult = float(head_lr_mult)
        self._head_ids = {id(v) for v in head_variables(generator)}
        self._trackers = {}
        self._diagnostics = []

    def compile(self, g_optimizer, d_main_optimizer=None, d_aux_optimizer=None, jit_compile=False):
        """Stores and builds the three optimizers (call in strategy scope)."""
        super().compile(optimizer=g_optimizer, jit_compile=jit_compile)
        self.g_optimizer = g_optimizer
        self.d_main_optimizer = d_main_optimizer if self.d_main else None
        self.d_aux_optimizer = d_aux_optimizer if self.d_aux else None
        # Checkpoint restore silently skips an unbuilt optimizer's state.
        g_optimizer.build(self.generator.trainable_variables)
        for disc, opt in ((self.d_main, self.d_main_optimizer),
                          (self.d_aux, self.d_aux_optimizer)):
            if disc is not None:
                if opt is None:
                    raise ValueError(f"{disc.name} needs an optimizer")
                opt.build(disc.trainable_variables)

    def tracker(self, name, make=None):
        """The metric of a logged quantity, created on first use: a keras.metrics.Mean, or
        `make(name)` for a diagnostic (reset with the trackers, its result logged every step)."""
        if name not in self._trackers:
            self._trackers[name] = (make or keras.metrics.Mean)(name)
            if make:
                self._diagnostics.append(name)
        return self._trackers[name]

    def declare_trackers(self, names, d_diagnostics=()):
        """Creates the trackers of `names` and, if adversarial, of the D and adversarial losses,
        each D's AUC and `d_diagnostics` [(name pattern, make)], and the gradient share."""
        if self.adversarial:
            names = [*names, "loss_adv", "loss_adv_aux", "loss_d", "loss_d_aux"]
        for name in names:
            self.tracker(name)
        for suffix, disc in (("", self.d_main), ("_aux", self.d_aux)):
            if self.adversarial and disc is not None:
                for name, make in ((diagnostics.AUC, diagnostics.PairwiseAUC), *d_diagnostics):
                    self.tracker(name.format(suffix), make)
        if self.measures_gradient_share:
            self.tracker(diagnostics.GRAD_SHARE, diagnostics.LastValue)

    @staticmethod
    def discriminate(disc, maps):
        """disc(maps), and a tape that recorded only that pass: D's update
        re-enters it, as the output of G's adversarial term serves D's loss
        too (same maps, same weights; AdvEnt's train_UDA.py runs D twice)."""
        tape = tf.GradientTape()
        with tape:
            logits = disc(maps, training=True)
        return logits, tape

    def adversarial_heads(self, main, aux, weight_main, weight_aux):
        """[(logits, D, D's optimizer, weight, suffix)] of the main head and, if any, the aux."""
        heads = [(main, self.d_main, self.d_main_optimizer, weight_main, "")]
        if aux is not None and self.d_aux is not None:
            heads.append((aux, self.d_aux, self.d_aux_optimizer, weight_aux, "_aux"))
        return heads

    @property
    def measures_gradient_share(self):
        return self.diag_every > 0 and getattr(self, "adversarial", False)

    def generator_tape(self):
        """The tape of G's loss: persistent when the share is measured."""
        return tf.GradientTape(persistent=self.measures_gradient_share)

    @property
    def metrics(self):
        return list(self._trackers.values())

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    def checkpoint_objects(self):
        """Everything a resume needs, for tf.train.Checkpoint."""
        objects = {"generator": self.generator, "g_optimizer": self.g_optimizer}
        for key in ("d_main", "d_aux"):
            if getattr(self, key) is not None:
                objects[key] = getattr(self, key)
                objects[key + "_optimizer"] = getattr(self, key + "_optimizer")
        return objects

    def segmentation_pass(self, images, labels, loss):
        """G on `images` (in G's tape) -> its (main, aux) logits at the input
        size, `loss` of each (the logged values), their sum (main +
        lambda_seg_aux x aux) weighted by `replica_share(labels)`, the share."""
        size = tf.shape(images)[1:3]
        main, aux = split_outputs(self.generator(images, training=True))
        main, aux = upsample(main, size), upsample(aux, size)
        share = replica_share(labels)
        values = {"loss_seg": loss(main, labels)}
        total = share * values["loss_seg"]
        if aux is not None:
            values["loss_seg_aux"] = loss(aux, labels)
            total += share * self.lambda_seg_aux * values["loss_seg_aux"]
        return (main, aux), values, total, share

    def l2_penalty(self):
        """0.5 * wd * sum(w^2) over G's trainable variables (coupled L2)."""
        if not self.weight_decay:
            return tf.constant(0.0)
        return 0.5 * self.weight_decay * tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, tf.float32)))
                                                   for v in self.generator.trainable_variables])

    def generator_update(self, tape, loss, adversarial=None):
        """Applies d(loss + L2)/dG; `loss` is weighted by `replica_share`. Every `diag_every` steps
        (with `generator_tape()`) logs ||grad(adversarial)|| / ||grad(loss + L2)||, `adversarial`
        being the beta * L_adv part of `loss`, with the heads' multiplier as applied."""
        with tape:  # re-entered: the L2 term and the scaling are recorded too
            total = _scale(self.g_optimizer, loss + self.l2_penalty() / replicas())
            measure = self.measures_gradient_share and adversarial is not None
            if measure:
                adversarial = _scale(self.g_optimizer, adversarial)
        variables = self.generator.trainable_variables
        grads = self._with_head_mult(tape.gradient(total, variables), variables)
        if measure:
            self._measure_gradient_share(tape, adversarial, grads, variables)
        self.g_optimizer.apply(grads, variables)

    def _with_head_mult(self, grads, variables):
        return [g * self.head_lr_mult if g is not None and id(v) in self._head_ids
                else g for g, v in zip(grads, variables)]

    def _measure_gradient_share(self, tape, adversarial, grads, variables):
        """Extra backward pass on diagnostic steps; logs the mean over the replicas' batches."""
        step = tf.cast(self.g_optimizer.iterations, tf.int64)
        due = tf.equal(step % self.diag_every, 0)

        def share():
            adv_grads = self._with_head_mult(tape.gradient(adversarial, variables), variables)
            return diagnostics.gradient_norm_share(adv_grads, grads)

        value = tf.cond(due, share, lambda: tf.constant(0.0))
        self.tracker(diagnostics.GRAD_SHARE, diagnostics.LastValue
                     ).update_state(value, tf.cast(due, tf.float32))

    def discriminator_update(self, tape, loss, discriminator, optimizer, share=None):
        """Applies d(loss)/dD; `loss`: a mean over all pixels (weighted 1/R) or over the pixels
        `share` (their replica_share) counts."""
        variables = discriminator.trainable_variables
        with tape:
            weighted = loss / replicas() if share is None else loss * share
            total = _scale(optimizer, weighted)
        optimizer.apply(tape.gradient(total, variables), variables)

    def report(self, values):
        """Updates the trackers and returns the logs dict of a train step."""
        logs = {}
        for name, value in values.items():
            tracker = self.tracker(name)
            tracker.update_state(value)
            logs[name] = tracker.result()
        for name in self._diagnostics:
            logs[name] = self._trackers[name].result()
        # The scheduled rates at the current iteration (Keras evaluates them).
        logs["lr_g"] = self.g_optimizer.learning_rate
        if self.d_main_optimizer is not None:
            logs["lr_d"] = self.d_main_optimizer.learning_rate
        return compat.reducible_logs(logs)

    def get_config(self):
        config = {key: keras.saving.serialize_keras_object(getattr(self, key)) for key in _MODELS}
        config.update((key, getattr(self, key)) for key in self.CONFIG_KEYS)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in _MODELS:
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def _scale(optimizer, loss):
    """Loss scaling for mixed_float16 (a LossScaleOptimizer unscales in apply)."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.scale_loss(loss)
    return loss
