package org.mobilelr.demo

import android.content.Context
import android.graphics.Bitmap
import android.graphics.Canvas
import android.graphics.Color
import android.graphics.Paint
import android.graphics.Path
import android.view.MotionEvent
import android.view.View
import org.mobilelr.core.DigitFeatures

/**
 * A square canvas to draw one digit with a finger (white on black, stroke a twelfth of the
 * side), and its 8x8 features computed by the core's [DigitFeatures] (tested on the JVM).
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
        // white ink on black: the red channel is the ink
        val ink = FloatArray(w * h) { Color.red(pixels[it]) / 255f }
        return DigitFeatures.fromInk(ink, w, h)
    }
}
