package org.mobilelr.core

/**
 * A finger drawing as the 8x8 features the digits model was trained on.
 *
 * The training data are scikit-learn's digits (UCI optdigits): 8x8 images with the ink as
 * high values (0..16, scaled to [0, 1] by the exporter's dataset), the digit normalised to
 * fill the box. [fromInk] does the same to a drawing: crop to the ink's bounding box, pad it
 * to a centred square with a margin of a ninth, average the ink over an 8x8 grid of cells,
 * and apply a gain so a stroke covering [1 / gain] of a cell reads as full ink. Pure
 * arithmetic on an array, so it is tested on the JVM (the app's canvas only supplies pixels).
 */
object DigitFeatures {
    const val SIDE = 8

    /**
     * [ink]: `width * height` values in [0, 1], row-major (1 = full ink). Returns 64 floats
     * in [0, 1] (row-major 8x8), or null when no value reaches [threshold].
     */
    fun fromInk(ink: FloatArray, width: Int, height: Int, threshold: Float = 0.16f, gain: Double = 2.0): FloatArray? {
        require(ink.size == width * height) { "ink has ${ink.size} values, expected ${width * height}" }
        var minX = width
        var minY = height
        var maxX = -1
        var maxY = -1
        for (y in 0 until height) for (x in 0 until width) {
            if (ink[y * width + x] >= threshold) {
                if (x < minX) minX = x
                if (x > maxX) maxX = x
                if (y < minY) minY = y
                if (y > maxY) maxY = y
            }
        }
        if (maxX < 0) return null
        val side = (Math.max(maxX - minX, maxY - minY) + 1) * 10 / 9 + 1
        val x0 = (minX + maxX + 1) / 2 - side / 2
        val y0 = (minY + maxY + 1) / 2 - side / 2
        val out = FloatArray(SIDE * SIDE)
        for (gy in 0 until SIDE) for (gx in 0 until SIDE) {
            val ya = y0 + gy * side / SIDE
            val yb = y0 + (gy + 1) * side / SIDE
            val xa = x0 + gx * side / SIDE
            val xb = x0 + (gx + 1) * side / SIDE
            var sum = 0.0
            var n = 0
            for (y in ya until yb) for (x in xa until xb) {
                n++
                if (x in 0 until width && y in 0 until height) sum += ink[y * width + x]
            }
            out[gy * SIDE + gx] = if (n == 0) 0f else Math.min(1.0, gain * sum / n).toFloat()
        }
        return out
    }
}
