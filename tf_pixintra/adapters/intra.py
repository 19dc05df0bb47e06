"""Stage II: pixel-level intra-domain adaptation (paper Sec 4.2, Eq. 5-9).

G trains on target images only: partial cross-entropy on the easy pixels'
pseudo labels (Eq. 5, main + 0.1 x aux), plus an adversarial term on hard
pixels from one pixel-level discriminator per head, whose logits are
upsampled to the input size (Sec 5.1):
- PLA (Eq. 6): D classifies each pixel hard (M = 1) vs easy; G makes hard
  pixels look easy.
- CTS (Eq. 8): D regresses the continuous index Z (Eq. 7); G pushes D's
  output on hard pixels to 0.
Eq. 9: L_G = L_seg + beta * L_adv (beta 1e-3 main, 2e-4 aux). From round two
on (T = 1) the CRST KLD regulariser is added with weight `kld_lambda`.
"""

import keras
import tensorflow as tf

from tf_pixintra import losses
from tf_pixintra.adapters.common import AdversarialAdapter
from tf_pixintra.adapters.common import replica_share
from tf_pixintra.adapters.common import split_outputs
from tf_pixintra.adapters.common import upsample

METHODS = ("pla", "cts", "none")

_D_LOSS = {"pla": (losses.pla_discriminator_loss, "hard_mask"),
           "cts": (losses.cts_discriminator_loss, "z")}
_G_LOSS = {"pla": losses.pla_generator_loss, "cts": losses.cts_generator_loss}


@keras.saving.register_keras_serializable(package="tf_pixintra")
class PixelIntraAdapter(AdversarialAdapter):
    """keras.Model whose `fit` runs Stage II.

    Each batch is a dict with `image` (float32, Caffe-preprocessed),
    `pseudo_label` (uint8, 255 = none), `hard_mask` (uint8, 1 = hard) and
    `z` (float32), all with the same crop.
    """

    def __init__(self, generator, d_main=None, d_aux=None, *, method="cts",
                 lambda_seg_aux=0.1, beta_main=1e-3, beta_aux=2e-4,
                 kld_lambda=0.0, **kwargs):
        if method not in METHODS:
            raise ValueError(f"method={method!r}: expected one of {METHODS}")
        super().__init__(generator, d_main, d_aux, **kwargs)
        self.method = method
        self.lambda_seg_aux = float(lambda_seg_aux)
        self.beta_main = float(beta_main)
        self.beta_aux = float(beta_aux)
        self.kld_lambda = float(kld_lambda)
        names = ["loss_seg", "loss_seg_aux"]
        if self.kld_lambda:
            names.append("loss_kld")
        if self.adversarial:
            names += ["loss_adv", "loss_adv_aux", "loss_d", "loss_d_aux"]
        self.declare_trackers(names)

    @property
    def adversarial(self):
        return self.method != "none"

    def train_step(self, data):
        x, labels = data["image"], data["pseudo_label"]
        size = tf.shape(x)[1:3]
        with tf.GradientTape() as tape:
            main, aux = split_outputs(self.generator(x, training=True))
            main, aux = upsample(main, size), upsample(aux, size)
            share, share_labelled = replica_share(), replica_share(labels)
            loss_seg = losses.partial_cross_entropy(main, labels)
            values = {"loss_seg": loss_seg}
            total = share_labelled * loss_seg
            heads = [(main, self.d_main, self.beta_main, "")]
            if aux is not None:
                loss_seg_aux = losses.partial_cross_entropy(aux, labels)
                values["loss_seg_aux"] = loss_seg_aux
                total += share_labelled * self.lambda_seg_aux * loss_seg_aux
                if self.d_aux is not None:
                    heads.append((aux, self.d_aux, self.beta_aux, "_aux"))
            if self.kld_lambda:
                loss_kld = losses.kld_regularizer(main, labels)
                values["loss_kld"] = loss_kld
                total += share_labelled * self.kld_lambda * loss_kld
            probs = []
            if self.adversarial:
                for logits, disc, beta, suffix in heads:
                    p = tf.nn.softmax(logits, axis=-1)
                    probs.append(p)
                    loss_adv = _G_LOSS[self.method](disc(p), data["hard_mask"])
                    values["loss_adv" + suffix] = loss_adv
                    total += share * beta * loss_adv
        self.generator_update(tape, total)
        if self.adversarial:
            values.update(self._discriminator_step(heads, probs, data))
        return self.report(values)

    def _discriminator_step(self, heads, probs, data):
        """Each D fits M (PLA) or Z (CTS) on the detached maps of this step."""
        d_loss, target_key = _D_LOSS[self.method]
        optimizers = [self.d_main_optimizer, self.d_aux_optimizer]
        values = {}
        for (_, disc, _, suffix), p, opt in zip(heads, probs, optimizers):
            p = tf.stop_gradient(p)
            with tf.GradientTape() as tape:
                loss_d = d_loss(disc(p, training=True), data[target_key])
            self.discriminator_update(tape, loss_d, disc, opt)
            values["loss_d" + suffix] = loss_d
        return values

    def get_config(self):
        config = super().get_config()
        config.update(method=self.method, lambda_seg_aux=self.lambda_seg_aux,
                      beta_main=self.beta_main, beta_aux=self.beta_aux,
                      kld_lambda=self.kld_lambda)
        return config
