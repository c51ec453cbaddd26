package org.mobilelr.core

/**
 * The progress map: how a schedule follows a budget that keeps changing
 * (Kotlin twin of `mobile_lr/schedules/plan.py`).
 *
 * A plan history `[(t0=0, T0), (t1, T1), ...]` says "at step t_k the planned total
 * became T_k". Progress-based shapes are evaluated at a virtual step `u(t)`: before
 * any re-plan `u(t) = t`; at a re-plan the progress reached, `p0 = u(t0)/T_old`, is
 * kept and the remaining progress is spread over the remaining steps, so the shape
 * reaches its end value exactly at the new total; a total at or below the current
 * step means the budget is spent and the shape sits at its end value.
 */
data class PlanEntry(val step: Long, val total: Long) {
    fun toJson(): List<Long> = listOf(step, total)
}

/** One linear piece of the progress map, valid from [start] on. */
internal class Segment(val start: Long, val u0: Double, val end: Long) {
    val slope: Double
        get() {
            val remaining = end - start
            return if (remaining > 0) (end.toDouble() - u0) / remaining.toDouble() else 0.0
        }

    fun uAt(s: Double): Double {
        if (end - start <= 0) return end.toDouble()
        return Py.min(u0 + (s - start.toDouble()) * slope, end.toDouble())
    }
}

object PlanMap {
    /** Validate a plan history given as JSON (`[[0, T0], [t1, T1], ...]`). */
    fun check(plan: Any?, field: String = "plan"): List<PlanEntry> {
        if (plan !is List<*> || plan.isEmpty()) {
            throw ValidationError(field, "expected a non-empty list of [step, total] pairs",
                "[[0, T0], [t1, T1], ...] with steps non-decreasing")
        }
        val out = ArrayList<PlanEntry>()
        for ((i, item) in plan.withIndex()) {
            if (item !is List<*> || item.size != 2 || item.any { it !is Long && it !is Int }) {
                throw ValidationError("$field[$i]", "expected [step, total] integers, got ${pyRepr(item)}",
                    "two integers >= 0")
            }
            val t = (item[0] as Number).toLong()
            val total = (item[1] as Number).toLong()
            out.add(checkEntry(out, i, t, total, field))
        }
        return out
    }

    /** Validate a plan history built in code. */
    fun check(plan: List<PlanEntry>, field: String = "plan"): List<PlanEntry> {
        if (plan.isEmpty()) {
            throw ValidationError(field, "expected a non-empty list of [step, total] pairs",
                "[[0, T0], [t1, T1], ...] with steps non-decreasing")
        }
        val out = ArrayList<PlanEntry>(plan.size)
        for ((i, e) in plan.withIndex()) out.add(checkEntry(out, i, e.step, e.total, field))
        return out
    }

    private fun checkEntry(out: List<PlanEntry>, i: Int, t: Long, total: Long, field: String): PlanEntry {
        if (t < 0 || total < 0) throw ValidationError("$field[$i]", "negative value in [$t, $total]", "integers >= 0")
        if (i == 0 && t != 0L) throw ValidationError("$field[0]", "the first plan must start at step 0, got $t", "[0, T0]")
        if (out.isNotEmpty() && t < out[out.size - 1].step) {
            throw ValidationError("$field[$i]", "step $t goes back in time", "non-decreasing steps")
        }
        return PlanEntry(t, total)
    }

    /**
     * The plan history as seen by a part of the schedule that starts at [offset]: entries
     * at or before it collapse into the part's initial total, later ones move into its
     * local time.
     */
    fun shift(plan: List<PlanEntry>, offset: Long): List<PlanEntry> {
        var first = plan[0]
        val later = ArrayList<PlanEntry>()
        for (e in plan) {
            if (e.step <= offset) first = e else later.add(PlanEntry(e.step - offset, e.total - offset))
        }
        val out = ArrayList<PlanEntry>(later.size + 1)
        out.add(PlanEntry(0, first.total - offset))
        out.addAll(later)
        return out
    }

    internal fun segments(plan: List<PlanEntry>): List<Segment> {
        val segs = ArrayList<Segment>(plan.size)
        segs.add(Segment(0, 0.0, Py.max(plan[0].total, 1L)))
        for (k in 1 until plan.size) {
            val t = plan[k].step
            val prev = segs[segs.size - 1]
            val progress = prev.uAt(t.toDouble()) / prev.end.toDouble()
            val end = Py.max(plan[k].total, 1L)
            segs.add(Segment(t, progress * end.toDouble(), end))
        }
        return segs
    }

    /** Virtual step `u` and current total `E` at local step [s]. */
    internal fun warp(s: Double, segs: List<Segment>): Pair<Double, Double> {
        var seg = segs[0]
        for (k in 1 until segs.size) {
            val cand = segs[k]
            if (s >= cand.start.toDouble()) seg = cand else break
        }
        return Pair(seg.uAt(s), seg.end.toDouble())
    }
}
