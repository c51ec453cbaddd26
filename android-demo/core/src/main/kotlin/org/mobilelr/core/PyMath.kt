package org.mobilelr.core

/**
 * The few arithmetic helpers whose exact semantics the Python reference relies on.
 *
 * The Kotlin port is checked against Python to 1e-12 relative on every golden learning
 * rate and exactly on every manager decision, so each formula is transcribed with the
 * same operations in the same order, and the helpers below reproduce Python's choices
 * where Kotlin's differ (which operand `min` returns on ties and NaN, for example).
 * Transcendental functions come from [StrictMath] (fdlibm): the same bits on every
 * JVM and every Android device, where [Math] may use a device-specific intrinsic.
 */
internal object Py {
    /** `ops.minimum` of the scalar back-end: `a if a <= b else b`. */
    fun opsMin(a: Double, b: Double): Double = if (a <= b) a else b

    /** `ops.maximum` of the scalar back-end: `a if a >= b else b`. */
    fun opsMax(a: Double, b: Double): Double = if (a >= b) a else b

    /** Python's builtin `min(a, b)`: `b if b < a else a`. */
    fun min(a: Double, b: Double): Double = if (b < a) b else a

    /** Python's builtin `max(a, b)`: `b if b > a else a`. */
    fun max(a: Double, b: Double): Double = if (b > a) b else a

    fun min(a: Long, b: Long): Long = if (b < a) b else a
    fun max(a: Long, b: Long): Long = if (b > a) b else a

    /** Python's `x ** y` on floats (validated inputs never reach its complex/error cases). */
    fun pow(x: Double, y: Double): Double = StrictMath.pow(x, y)

    fun cos(x: Double): Double = StrictMath.cos(x)
    fun sqrt(x: Double): Double = StrictMath.sqrt(x)
    fun log(x: Double): Double = StrictMath.log(x)
    fun exp(x: Double): Double = StrictMath.exp(x)
    fun floor(x: Double): Double = StrictMath.floor(x)
    fun ceil(x: Double): Double = StrictMath.ceil(x)

    /** `math.floor(x)` as an integer. */
    fun floorLong(x: Double): Long = StrictMath.floor(x).toLong()

    /** `math.nextafter(x, inf)`. */
    fun nextUp(x: Double): Double = Math.nextUp(x)

    fun isFinite(x: Double): Boolean = !x.isNaN() && !x.isInfinite()

    const val PI = Math.PI
    val INF = Double.POSITIVE_INFINITY
}
