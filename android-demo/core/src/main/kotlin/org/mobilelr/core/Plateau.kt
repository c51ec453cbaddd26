package org.mobilelr.core

/**
 * State of the `plateau` shape (ReduceLROnPlateau), the JSON-able dict of the Python
 * reference: `lr`, `best` (null = PyTorch's +/-inf before any metric),
 * `num_bad_epochs`, `cooldown_counter`, `last_epoch`.
 */
data class PlateauState(
    val lr: Double,
    val best: Double?,
    val numBadEpochs: Long,
    val cooldownCounter: Long,
    val lastEpoch: Long
) {
    fun toJson(): Map<String, Any?> = linkedMapOf(
        "lr" to lr, "best" to best, "num_bad_epochs" to numBadEpochs,
        "cooldown_counter" to cooldownCounter, "last_epoch" to lastEpoch)

    companion object {
        fun fromJson(value: Any?, path: String = "plateau_state"): PlateauState {
            val o = getObject(value, path)
            checkKeys(o, path, listOf("lr", "best", "num_bad_epochs", "cooldown_counter", "last_epoch"),
                listOf("lr", "best", "num_bad_epochs", "cooldown_counter", "last_epoch"))
            return PlateauState(
                checkNumber(o["lr"], join(path, "lr"), lo = 0.0),
                if (o["best"] == null) null else checkNumber(o["best"], join(path, "best")),
                checkInt(o["num_bad_epochs"], join(path, "num_bad_epochs"), lo = 0),
                checkInt(o["cooldown_counter"], join(path, "cooldown_counter"), lo = 0),
                checkInt(o["last_epoch"], join(path, "last_epoch"), lo = 0))
        }
    }
}

/**
 * ReduceLROnPlateau as a pure state transition (twin of `mobile_lr/schedules/plateau.py`):
 * PyTorch's rules, "better" is `a < best * (1 - threshold)` (min, rel) and its siblings,
 * the LR is cut after `patience + 1` bad observations, cool-down observations never
 * count as bad, a cut smaller than `eps` is skipped.
 */
class PlateauRule(
    val mode: String = "min",
    val factor: Double = 0.1,
    val patience: Long = 10,
    val threshold: Double = 1e-4,
    val thresholdMode: String = "rel",
    val cooldown: Long = 0,
    val minLr: Double = 0.0,
    val eps: Double = 1e-8
) {
    fun start(lr: Double) = PlateauState(lr, null, 0, 0, 0)

    private fun isBetter(a: Double, best0: Double?): Boolean {
        val best = best0 ?: if (mode == "min") Double.POSITIVE_INFINITY else Double.NEGATIVE_INFINITY
        if (mode == "min" && thresholdMode == "rel") return a < best * (1.0 - threshold)
        if (mode == "min") return a < best - threshold
        if (thresholdMode == "rel") return a > best * (threshold + 1.0)
        return a > best + threshold
    }

    /** The state after one metric (for example an eval loss). */
    fun observe(state: PlateauState, metric: Double): PlateauState {
        var best = state.best
        var bad: Long
        if (isBetter(metric, state.best)) {
            best = metric
            bad = 0
        } else {
            bad = state.numBadEpochs + 1
        }
        var cool = state.cooldownCounter
        if (cool > 0) {
            cool -= 1
            bad = 0
        }
        var lr = state.lr
        if (bad > patience) {
            val oldLr = lr
            val newLr = Py.max(oldLr * factor, minLr)
            if (oldLr - newLr > eps) lr = newLr
            cool = cooldown
            bad = 0
        }
        return PlateauState(lr, best, bad, cool, state.lastEpoch + 1)
    }
}
