"""Stage II: pixel-level intra-domain adaptation (paper Sec 4.2, Eq. 5-9).

On target images, Eq. 9: L_G = L_seg (Eq. 5, easy pixels) + beta * L_adv (hard pixels, one
pixel-level D per head, Sec 5.1), from round two (T = 1) plus `kld_lambda` x CRST's KLD. PLA
(Eq. 6): D classifies pixels hard vs easy; CTS (Eq. 8): D regresses Z (Eq. 7). Padded pixels (hard
mask `losses.PAD_MASK`) are left out, weighted across replicas by `replica_share`.
"""

import keras
import tensorflow as tf

from tf_pixintra import choices
from tf_pixintra import losses
from tf_pixintra.adapters import diagnostics
from tf_pixintra.adapters.common import AdversarialAdapter
from tf_pixintra.adapters.common import replica_share

_D_LOSS = {"pla": losses.pla_discriminator_loss, "cts": losses.cts_discriminator_loss}
_G_LOSS = {"pla": losses.pla_generator_loss, "cts": losses.cts_generator_loss}


@keras.saving.register_keras_serializable(package="tf_pixintra")
class PixelIntraAdapter(AdversarialAdapter):
    """keras.Model whose `fit` runs Stage II. Each batch is a dict with `image` (float32,
    Caffe-preprocessed), `pseudo_label` (uint8, 255 = none), `hard_mask` (uint8, 1 = hard) and `z`
    (float32), all with the same crop."""

    CONFIG_KEYS = AdversarialAdapter.CONFIG_KEYS + (
        "method", "beta_main", "beta_aux", "kld_lambda")

    def __init__(self, generator, d_main=None, d_aux=None, *, method="cts",
                 beta_main=1e-3, beta_aux=2e-4, kld_lambda=0.0, **kwargs):
        # The image-level "intrada" baseline trains with InterDomainAdapter.
        choices.check("method", method, tuple(m for m in choices.INTRA_METHODS if m != "intrada"))
        super().__init__(generator, d_main, d_aux, **kwargs)
        self.method = method
        self.beta_main = float(beta_main)
        self.beta_aux = float(beta_aux)
        self.kld_lambda = float(kld_lambda)
        names = ["loss_seg", "loss_seg_aux"] + (["loss_kld"] if self.kld_lambda else [])
        zcorr = [(diagnostics.ZCORR, diagnostics.StreamingPearson)]
        self.declare_trackers(names, zcorr if method == "cts" else ())

    @property
    def adversarial(self):
        return self.method != "none"

    def train_step(self, data):
        labels = data["pseudo_label"]
        mask, valid = losses.hard_mask_and_valid(data["hard_mask"])
        adversarial = 0.0
        with self.generator_tape() as tape:
            (main, aux), values, total, share_labelled = self.segmentation_pass(
                data["image"], labels, losses.partial_cross_entropy)
            heads = self.adversarial_heads(main, aux, self.beta_main, self.beta_aux)
            if self.kld_lambda:
                loss_kld = losses.kld_regularizer(main, labels)
                values["loss_kld"] = loss_kld
                total += share_labelled * self.kld_lambda * loss_kld
            d_outs = []
            if self.adversarial:
                share_valid = replica_share(data["hard_mask"], losses.PAD_MASK)
                for logits, disc, _, beta, suffix in heads:
                    d_out = self.discriminate(disc, tf.nn.softmax(logits, axis=-1))
                    d_outs.append(d_out)
                    loss_adv = _G_LOSS[self.method](d_out[0], mask, valid)
                    values["loss_adv" + suffix] = loss_adv
                    adversarial += share_valid * beta * loss_adv
                total += adversarial
        self.generator_update(tape, total, adversarial if self.adversarial else None)
        if self.adversarial:
            values.update(self._discriminator_step(heads, d_outs, data, mask, valid, share_valid))
        return self.report(values)

    def _discriminator_step(self, heads, d_outs, data, mask, valid, share):
        """Each D fits M (PLA) or Z (CTS) on the detached maps of this step; `d_outs`: (D's output,
        its tape) per D from G's adversarial term (it also scores the diagnostics)."""
        target = mask if self.method == "pla" else data["z"]
        values = {}
        for (_, disc, opt, _, suffix), (d_logits, tape) in zip(heads, d_outs):
            with tape:
                loss_d = _D_LOSS[self.method](d_logits, target, valid)
            self.discriminator_update(tape, loss_d, disc, opt, share)
            values["loss_d" + suffix] = loss_d
            # AUC against M of the logits (higher = harder for PLA and CTS):
            # sigmoid's ranking without its float32 ties at large |logit|.
            logits = tf.squeeze(tf.cast(d_logits, tf.float32), -1)
            self._trackers[diagnostics.AUC.format(suffix)].update_state(mask, logits, valid)
            if self.method == "cts":
                self._trackers[diagnostics.ZCORR.format(suffix)].update_state(
                    tf.sigmoid(logits), data["z"], valid)
        return values
