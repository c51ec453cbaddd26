package org.mobilelr.demo

import org.mobilelr.core.AtomicFile
import org.mobilelr.core.Json
import java.io.File

/**
 * The user's labelled drawings: a JSON file of `{"x": [64 floats in 0..1], "y": label}`
 * rows in app storage, rewritten atomically (temp file + rename) on every change, so a
 * kill mid-write leaves the previous version.
 */
class SampleStore(dir: File) {
    private val file = File(dir, "samples.json")

    data class Sample(val x: FloatArray, val y: Int)

    @Synchronized
    fun all(): List<Sample> {
        if (!file.isFile) return emptyList()
        val rows = Json.parse(file.readText()) as List<*>
        return rows.map { r ->
            val row = r as Map<*, *>
            val x = (row["x"] as List<*>).map { (it as Number).toFloat() }.toFloatArray()
            Sample(x, (row["y"] as Number).toInt())
        }
    }

    @Synchronized
    fun add(sample: Sample) = write(all() + sample)

    @Synchronized
    fun clear() = write(emptyList())

    fun count(): Int = all().size

    /** Count per label, for the screen. */
    fun histogram(classes: Int): IntArray {
        val h = IntArray(classes)
        for (s in all()) if (s.y in 0 until classes) h[s.y]++
        return h
    }

    private fun write(rows: List<Sample>) {
        val tree = rows.map { s -> linkedMapOf("x" to s.x.map { it.toDouble() }, "y" to s.y.toLong()) }
        AtomicFile.write(file, Json.write(tree))
    }
}
