package org.mobilelr.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Test

/** The drawing-to-8x8 preprocessing of the app, on synthetic drawings whose answer is known. */
class DigitFeaturesTest {
    private fun canvas(w: Int, h: Int, draw: (Int, Int) -> Boolean): FloatArray =
        FloatArray(w * h) { i -> if (draw(i % w, i / w)) 1f else 0f }

    @Test
    fun emptyCanvasHasNoFeatures() {
        assertNull(DigitFeatures.fromInk(FloatArray(100 * 100), 100, 100))
        assertNull(DigitFeatures.fromInk(FloatArray(100 * 100) { 0.1f }, 100, 100))  // below the threshold
    }

    @Test
    fun aCentredVerticalBarLightsTheMiddleColumnsOnly() {
        // a "1": a bar 12 px wide (x 94..105), 160 px tall, in a 200x200 canvas. The crop is a
        // square of 160 * 10/9 + 1 = 178 px from x = 11; cells split it at 178 * k / 8, so
        // column 3 is x 77..99 (23 px) and column 4 x 100..121 (22 px): each holds 6 px of the
        // bar, which with the gain 2 reads 2 * (6/23 + 6/22) over the two middle columns.
        val f = DigitFeatures.fromInk(canvas(200, 200) { x, y -> x in 94..105 && y in 20..179 }, 200, 200)!!
        for (row in 1..6) {
            assertEquals("row $row, middle", 2.0 * (6.0 / 23 + 6.0 / 22), (f[row * 8 + 3] + f[row * 8 + 4]).toDouble(), 1e-6)
            for (col in listOf(0, 1, 2, 5, 6, 7)) assertEquals("row $row col $col", 0f, f[row * 8 + col], 0f)
        }
        for (v in f) assertTrue(v in 0f..1f)
    }

    @Test
    fun featuresDoNotDependOnWhereOrHowBigTheDigitIsDrawn() {
        // the same ring drawn small in a corner and large in the centre
        fun ring(cx: Int, cy: Int, r: Int, t: Int) = { x: Int, y: Int ->
            val d2 = (x - cx) * (x - cx) + (y - cy) * (y - cy)
            d2 <= r * r && d2 >= (r - t) * (r - t)
        }
        val small = DigitFeatures.fromInk(canvas(300, 300, ring(60, 70, 36, 6)), 300, 300)!!
        val moved = DigitFeatures.fromInk(canvas(300, 300, ring(200, 210, 36, 6)), 300, 300)!!
        assertArrayEquals(small, moved, 0f)
        val large = DigitFeatures.fromInk(canvas(300, 300, ring(150, 150, 108, 18)), 300, 300)!!
        var diff = 0.0
        for (i in small.indices) diff += Math.abs(small[i] - large[i])
        assertTrue("mean difference ${diff / 64} between a ring and the same ring 3x larger", diff / 64 < 0.08)
        // a ring: dark centre, ink around it
        assertEquals(0f, small[3 * 8 + 3], 0.05f)
        assertTrue(small[0 * 8 + 3] + small[7 * 8 + 4] > 1f)
    }

    @Test
    fun partialInkIsAveragedWithTheGain() {
        // a full square of half-strength ink reads as full ink (gain 2), a quarter as half
        val half = DigitFeatures.fromInk(FloatArray(90 * 90) { 0.5f }, 90, 90)!!
        val quarter = DigitFeatures.fromInk(FloatArray(90 * 90) { 0.25f }, 90, 90)!!
        assertEquals(1f, half[4 * 8 + 4], 1e-6f)
        assertEquals(0.5f, quarter[4 * 8 + 4], 1e-6f)
    }
}
