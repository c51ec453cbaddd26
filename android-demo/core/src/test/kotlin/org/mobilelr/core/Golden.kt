package org.mobilelr.core

import java.io.InputStreamReader

/**
 * The golden vectors written by the Python reference (`mobile-lr schedule golden`),
 * read from the test classpath. The test command regenerates them and fails if the
 * committed copy differs, so they are always the current Python answers.
 */
object Golden {
    val data: Map<String, Any?> by lazy {
        val stream = Golden::class.java.getResourceAsStream("/golden.json")
            ?: throw IllegalStateException("golden.json is not on the test classpath (src/test/resources)")
        val text = InputStreamReader(stream, Charsets.UTF_8).use { it.readText() }
        @Suppress("UNCHECKED_CAST")
        Json.parse(text) as Map<String, Any?>
    }

    @Suppress("UNCHECKED_CAST")
    fun section(name: String): List<Map<String, Any?>> =
        (data[name] ?: throw AssertionError("golden.json has no section '$name'")) as List<Map<String, Any?>>

    /** NaN and infinities are written as strings by the Python side (they are not JSON). */
    fun unsafe(value: Any?): Any? = when (value) {
        "NaN" -> Double.NaN
        "Infinity" -> Double.POSITIVE_INFINITY
        "-Infinity" -> Double.NEGATIVE_INFINITY
        is Map<*, *> -> {
            val out = LinkedHashMap<String, Any?>()
            for ((k, v) in value) out[k.toString()] = unsafe(v)
            out
        }
        is List<*> -> value.map { unsafe(it) }
        else -> value
    }

    fun doubles(value: Any?): List<Double> = (value as List<*>).map { (it as Number).toDouble() }
    fun longs(value: Any?): List<Long> = (value as List<*>).map { (it as Number).toLong() }
    fun plan(value: Any?): List<PlanEntry> = PlanMap.check(value)

    /**
     * The agreement the project promises: 1e-12 relative, and exactly 0 where Python gives 0
     * (and the same non-finite value, which a valid spec never yields).
     */
    fun close(python: Double, kotlin: Double, rel: Double = 1e-12): Boolean {
        if (python == 0.0) return kotlin == 0.0
        if (python.isNaN() || python.isInfinite()) return python.equals(kotlin)
        return Math.abs(kotlin - python) <= rel * Math.abs(python)
    }
}

/** Collects mismatches so one failing test reports many cases at once. */
class Mismatches(private val what: String, private val limit: Int = 25) {
    private val lines = ArrayList<String>()
    var count = 0
        private set

    fun add(line: String) {
        count++
        if (lines.size < limit) lines.add(line)
    }

    fun check() {
        if (count > 0) {
            throw AssertionError("$count $what disagree with the Python reference:\n" + lines.joinToString("\n"))
        }
    }
}
