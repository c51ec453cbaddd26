package org.mobilelr.demo

import android.content.Context
import android.graphics.Bitmap
import android.graphics.Canvas
import android.graphics.Color
import android.graphics.Paint
import android.graphics.Path
import android.view.MotionEvent
import android.view.View

/**
 * A square canvas to draw one digit with a finger, and its 8x8 features.
 *
 * The model was trained on scikit-learn's digits (UCI optdigits): 8x8 images, ink as high
 * values 0..16 (scaled to 0..1 by the exporter's dataset), the digit normalised to fill the
 * box. [features] does the same to a drawing: crop to the ink's bounding box, pad it to a
 * centred square, and average the ink over an 8x8 grid of cells (area averaging of the
 * screen pixels, then a gain of 2 so a stroke covering half a cell reads as full ink),
 * row-major.
 */
class DigitCanvasView(context: Context) : View(context) {
    private val paint = Paint().apply {
        color = Color.WHITE
        isAntiAlias = true
        style = Paint.Style.STROKE
        strokeCap = Paint.Cap.ROUND
        strokeJoin = Paint.Join.ROUND
    }
    private var bitmap: Bitmap? = null
    private var canvas: Canvas? = null
    private val path = Path()
    private var lastX = 0f
    private var lastY = 0f

    override fun onMeasure(widthMeasureSpec: Int, heightMeasureSpec: Int) {
        val w = MeasureSpec.getSize(widthMeasureSpec)
        setMeasuredDimension(w, w)  // square
    }

    override fun onSizeChanged(w: Int, h: Int, oldw: Int, oldh: Int) {
        if (w <= 0 || h <= 0) return
        bitmap = Bitmap.createBitmap(w, h, Bitmap.Config.ARGB_8888)
        canvas = Canvas(bitmap!!)
        paint.strokeWidth = w / 12f
        clear()
    }

    fun clear() {
        bitmap?.eraseColor(Color.BLACK)
        path.reset()
        invalidate()
    }

    override fun onDraw(c: Canvas) {
        bitmap?.let { c.drawBitmap(it, 0f, 0f, null) }
        c.drawPath(path, paint)
    }

    override fun onTouchEvent(e: MotionEvent): Boolean {
        when (e.actionMasked) {
            MotionEvent.ACTION_DOWN -> {
                path.moveTo(e.x, e.y)
                lastX = e.x
                lastY = e.y
            }
            MotionEvent.ACTION_MOVE -> {
                path.quadTo(lastX, lastY, (e.x + lastX) / 2, (e.y + lastY) / 2)
                lastX = e.x
                lastY = e.y
            }
            MotionEvent.ACTION_UP, MotionEvent.ACTION_CANCEL -> {
                path.lineTo(e.x, e.y)
                canvas?.drawPath(path, paint)
                path.reset()
            }
            else -> return false
        }
        invalidate()
        return true
    }

    /** The drawing as 64 floats in [0, 1] (row-major 8x8), or null when nothing is drawn. */
    fun features(): FloatArray? {
        val bmp = bitmap ?: return null
        val w = bmp.width
        val h = bmp.height
        val pixels = IntArray(w * h)
        bmp.getPixels(pixels, 0, w, 0, 0, w, h)
        var minX = w
        var minY = h
        var maxX = -1
        var maxY = -1
        for (yy in 0 until h) for (xx in 0 until w) {
            if (Color.red(pixels[yy * w + xx]) > 40) {
                if (xx < minX) minX = xx
                if (xx > maxX) maxX = xx
                if (yy < minY) minY = yy
                if (yy > maxY) maxY = yy
            }
        }
        if (maxX < 0) return null
        // centred square around the ink, with a small margin as in the training images
        val side = (Math.max(maxX - minX, maxY - minY) + 1) * 10 / 9 + 1
        val cx = (minX + maxX) / 2
        val cy = (minY + maxY) / 2
        val x0 = cx - side / 2
        val y0 = cy - side / 2
        val out = FloatArray(64)
        for (gy in 0 until 8) for (gx in 0 until 8) {
            var sum = 0.0
            var n = 0
            val ya = y0 + gy * side / 8
            val yb = y0 + (gy + 1) * side / 8
            val xa = x0 + gx * side / 8
            val xb = x0 + (gx + 1) * side / 8
            for (yy in ya until yb) for (xx in xa until xb) {
                n++
                if (xx in 0 until w && yy in 0 until h) sum += Color.red(pixels[yy * w + xx]) / 255.0
            }
            out[gy * 8 + gx] = if (n == 0) 0f else Math.min(1.0, 2.0 * sum / n).toFloat()
        }
        return out
    }
}
