package org.mobilelr.demo

import android.content.Context
import android.graphics.Canvas
import android.graphics.Color
import android.graphics.Paint
import android.graphics.Path
import android.view.View

/**
 * The run at a glance: the learning rate the manager set at every step (the schedule,
 * re-planned as the budget changed), the training loss, and the battery level, each scaled
 * to its own range, over the steps of the history.
 */
class ChartView(context: Context) : View(context) {
    private var rows: List<Map<String, Any?>> = emptyList()
    private val lrPaint = line(Color.rgb(66, 133, 244))
    private val lossPaint = line(Color.rgb(219, 68, 55))
    private val batteryPaint = line(Color.rgb(15, 157, 88))
    private val text = Paint().apply {
        color = Color.GRAY
        textSize = 28f
        isAntiAlias = true
    }

    private fun line(c: Int) = Paint().apply {
        color = c
        strokeWidth = 4f
        style = Paint.Style.STROKE
        isAntiAlias = true
    }

    fun setHistory(history: List<Map<String, Any?>>) {
        rows = history.filter { it["phase"] == "train" }
        invalidate()
    }

    override fun onMeasure(widthMeasureSpec: Int, heightMeasureSpec: Int) {
        val w = MeasureSpec.getSize(widthMeasureSpec)
        setMeasuredDimension(w, w / 2)
    }

    private fun series(key: String): List<Double?> = rows.map { (it[key] as Number?)?.toDouble() }

    private fun plot(c: Canvas, values: List<Double?>, paint: Paint, lo0: Double? = null, hi0: Double? = null) {
        val finite = values.filterNotNull()
        if (finite.size < 2) return
        var lo = finite[0]
        var hi = finite[0]
        for (v in finite) {
            if (v < lo) lo = v
            if (v > hi) hi = v
        }
        if (lo0 != null) lo = lo0
        if (hi0 != null) hi = hi0
        val span = if (hi > lo) hi - lo else 1.0
        val top = 40f
        val h = height - top - 10f
        val path = Path()
        var started = false
        for ((i, v) in values.withIndex()) {
            if (v == null) continue
            val x = width * i.toFloat() / (values.size - 1)
            val y = top + h * (1f - ((v - lo) / span).toFloat())
            if (started) path.lineTo(x, y) else path.moveTo(x, y)
            started = true
        }
        c.drawPath(path, paint)
    }

    override fun onDraw(c: Canvas) {
        c.drawColor(Color.rgb(250, 250, 250))
        if (rows.size < 2) {
            c.drawText("no training steps yet", 20f, height / 2f, text)
            return
        }
        plot(c, series("lr"), lrPaint, 0.0)
        plot(c, series("loss"), lossPaint, 0.0)
        plot(c, series("level"), batteryPaint, 0.0, 1.0)
        c.drawText("LR (blue)  loss (red)  battery 0-100 % (green)  ${rows.size} steps", 10f, 30f, text)
    }
}
