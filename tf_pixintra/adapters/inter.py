"""Stage I: inter-domain adaptation (paper Sec 3.1, Eq. 1), and IntraDA.

Multi-level output-space adversarial training (AdaptSegNet): G learns the
source cross-entropy and to fool one D per head on target maps; each D then
learns source (1) vs target (0) on the detached maps of the same step. The
IntraDA baseline of Stage II takes easy images as source, hard as target.
"""

import keras
import tensorflow as tf

from tf_pixintra import choices
from tf_pixintra import losses
from tf_pixintra.adapters import diagnostics
from tf_pixintra.adapters.common import AdversarialAdapter
from tf_pixintra.adapters.common import replica_share
from tf_pixintra.adapters.common import upsample
from tf_pixintra.models import split_outputs


@keras.saving.register_keras_serializable(package="tf_pixintra")
class InterDomainAdapter(AdversarialAdapter):
    """keras.Model whose `fit` runs Stage I; variant: `source_only`, `adaptsegnet` (softmax maps
    into D) or `advent` (self-information maps). Each batch is a dict with `source_image` (float32,
    Caffe-preprocessed), `source_label` (uint8 trainIds, 255 = ignore), `target_image` and
    optionally `source_valid` / `target_valid` (0 = padding, left out of each D's AUC)."""

    CONFIG_KEYS = AdversarialAdapter.CONFIG_KEYS + (
        "variant", "lambda_adv_main", "lambda_adv_aux")

    def __init__(self, generator, d_main=None, d_aux=None, *, variant="adaptsegnet",
                 lambda_adv_main=1e-3, lambda_adv_aux=2e-4, **kwargs):
        choices.check("variant", variant, ("source_only",) + choices.INTER_VARIANTS)
        super().__init__(generator, d_main, d_aux, **kwargs)
        self.variant = variant
        self.lambda_adv_main = float(lambda_adv_main)
        self.lambda_adv_aux = float(lambda_adv_aux)
        self.declare_trackers(["loss_seg", "loss_seg_aux"])

    @property
    def adversarial(self):
        return self.variant != "source_only"

    def discriminator_input(self, logits):
        """The map a discriminator sees: softmax, or AdvEnt's self-information."""
        probs = tf.nn.softmax(logits, axis=-1)
        if self.variant == "advent":
            return losses.weighted_self_information(probs)
        return probs

    def train_step(self, data):
        xs, ys, xt = data["source_image"], data["source_label"], data["target_image"]
        size_t = tf.shape(xt)[1:3]
        adversarial, share = 0.0, replica_share()
        with self.generator_tape() as tape:
            (main_s, aux_s), values, total, _ = self.segmentation_pass(
                xs, ys, losses.segmentation_cross_entropy)
            if self.adversarial:
                main_t, aux_t = split_outputs(self.generator(xt, training=True))
                heads = self.adversarial_heads(
                    (main_s, main_t), None if aux_t is None else (aux_s, aux_t),
                    self.lambda_adv_main, self.lambda_adv_aux)
                maps_s, d_t = [], []
                for (logits_s, logits_t), disc, _, weight, suffix in heads:
                    maps_s.append(self.discriminator_input(logits_s))
                    d_t.append(self.discriminate(disc, self.discriminator_input(
                        upsample(logits_t, size_t))))
                    loss_adv = losses.inter_generator_loss(d_t[-1][0])
                    values["loss_adv" + suffix] = loss_adv
                    adversarial += share * weight * loss_adv
                total += adversarial
        self.generator_update(tape, total, adversarial if self.adversarial else None)
        if self.adversarial:
            values.update(self._discriminator_step(heads, maps_s, d_t, data.get("source_valid"),
                                                   data.get("target_valid")))
        return self.report(values)

    def _discriminator_step(self, heads, maps_s, d_t, valid_s, valid_t):
        """D learns source = 1, target = 0 on the detached maps of this step; `d_t`: (D's output on
        the target maps, its tape) per D from G's adversarial term (it also feeds the AUC)."""
        values = {}
        for (_, disc, opt, _, suffix), m_s, (d_t_logits, tape) in zip(heads, maps_s, d_t):
            with tape:
                d_s = disc(tf.stop_gradient(m_s), training=True)
                loss_d = losses.inter_discriminator_loss(d_s, d_t_logits)
            self.discriminator_update(tape, loss_d, disc, opt)
            values["loss_d" + suffix] = loss_d
            self._update_auc(suffix, d_s, d_t_logits, valid_s, valid_t)
        return values

    def _update_auc(self, suffix, d_s, d_t, valid_s, valid_t):
        """AUC over both maps' pixels: positive = the side G adapts, scored by -logit (1 - D)."""
        scores, sides, weights = [], [], []
        for side, d_logits, valid in ((0.0, d_s, valid_s), (1.0, d_t, valid_t)):
            score = tf.reshape(-tf.cast(d_logits, tf.float32), [-1])
            scores.append(score)
            sides.append(tf.fill(tf.shape(score), side))
            weights.append(tf.ones_like(score) if valid is None else
                           tf.reshape(tf.cast(valid, tf.float32), [-1]))
        self._trackers[diagnostics.AUC.format(suffix)].update_state(
            tf.concat(sides, 0), tf.concat(scores, 0), tf.concat(weights, 0))
