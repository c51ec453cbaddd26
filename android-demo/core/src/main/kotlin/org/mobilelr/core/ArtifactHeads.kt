package org.mobilelr.core

/**
 * What a bundle's binary artifacts must begin with: the Kotlin twin of
 * `mobile_lr/artifact_heads.py` (the golden vectors' `bundle_contents` cases check that both agree).
 *
 * The manifest's hashes prove only that a file holds the bytes listed, and whoever can write
 * the bundle can re-hash it, so an empty or foreign `checkpoint` verified and reached ORT's
 * native loader. The ORT training checkpoint and the ExecuTorch files are flatbuffers: a
 * little-endian uint32 root table offset, then the schema's file identifier (`ODTC`, `ET12`,
 * `FT01`); ExecuTorch's own header follows (`eh00` in a `.pte`, required `FH01` in a `.ptd`),
 * and every region it names must lie inside the file. Deeper structure is the engine's to judge.
 */
object ArtifactHeads {
    /** Every check reads within this much of the file's start. */
    const val HEAD_BYTES = 64
    private const val ROOT_MIN = 8L

    private class Format(val what: String, val identifier: String, val magic: String?, val required: Boolean)

    private val FORMATS = mapOf(
        "checkpoint" to Format("an ONNX Runtime training checkpoint", "ODTC", null, false),
        ".pte" to Format("an ExecuTorch program", "ET12", "eh00", false),
        ".ptd" to Format("ExecuTorch tensor data", "FT01", "FH01", true))

    /** Little-endian unsigned value of [width] bytes at [at] (a uint64 beyond Long is clamped to Long.MAX_VALUE). */
    private fun u(head: ByteArray, at: Int, width: Int): Long {
        var v = 0L
        for (k in width - 1 downTo 0) {
            if (width == 8 && k == 7 && head[at + k].toInt() and 0x80 != 0) return Long.MAX_VALUE
            v = (v shl 8) or (head[at + k].toLong() and 0xff)
        }
        return v
    }

    private fun ascii(head: ByteArray, at: Int): String =
        String(CharArray(4) { (head[at + it].toInt() and 0xff).toChar() })

    /** `a + b > limit` without overflow (both >= 0). */
    private fun beyond(a: Long, b: Long, limit: Long): Boolean = a > limit || b > limit - a

    /** The program's end, or a problem, for a `.pte`'s `eh00` header (offsets from byte 8). */
    private fun pteHeader(head: ByteArray, size: Long): Pair<Long, String?> {
        val length = u(head, 12, 4)
        val program = u(head, 16, 8)
        val base = u(head, 24, 8)
        val data = if (length >= 32) u(head, 32, 8) else 0L
        if (length < 24) return Pair(size, "extended header length $length < 24")
        if (program > size) return Pair(size, "program size $program is beyond the file's $size bytes")
        if ((base != 0L && !(base in program..size)) || beyond(base, data, size)) {
            return Pair(size, "segments at $base + $data bytes lie outside the program's $size-byte file")
        }
        return Pair(program, null)
    }

    /** The flatbuffer's end, or a problem, for a `.ptd`'s `FH01` header. */
    private fun ptdHeader(head: ByteArray, size: Long): Pair<Long, String?> {
        val length = u(head, 12, 4)
        val offset = u(head, 16, 8)
        val fbSize = u(head, 24, 8)
        val base = u(head, 32, 8)
        val data = u(head, 40, 8)
        if (length < 40) return Pair(size, "tensor data header length $length < 40")
        if (beyond(offset, fbSize, size) || beyond(base, data, size)) {
            return Pair(size, "regions ($offset + $fbSize, $base + $data bytes) lie outside the $size-byte file")
        }
        return Pair(offset + fbSize, null)
    }

    /**
     * What keeps the file [name] of [size] bytes, beginning with [head0] (at least its first
     * [HEAD_BYTES], or all of it), from being the flatbuffer its name claims; null when it is
     * one, or when the name claims no flatbuffer (`.onnx` and `.json` are checked elsewhere).
     */
    fun problem(name: String, head0: ByteArray, size: Long): String? {
        val key = if (name == "checkpoint") name else if ('.' in name) name.substring(name.lastIndexOf('.')) else name
        val f = FORMATS[key] ?: return null
        if (size < ROOT_MIN + 4 || head0.size < minOf(size, HEAD_BYTES.toLong())) return "$size bytes: too short for ${f.what}"
        val head = head0.copyOf(HEAD_BYTES)  // a short file's header reads as zeros
        val id = ascii(head, 4)
        if (id != f.identifier) return "not ${f.what} (file identifier ${pyRepr(id)}, expected ${pyRepr(f.identifier)})"
        var end = size
        if (f.magic != null && ascii(head, 8) == f.magic) {
            val (e, problem) = if (f.magic == "eh00") pteHeader(head, size) else ptdHeader(head, size)
            if (problem != null) return "${f.what} with a bad header: $problem"
            end = e
        } else if (f.required) {
            return "${f.what} without its ${pyRepr(f.magic)} header"
        }
        val root = u(head, 0, 4)
        if (root < ROOT_MIN || root > end - 4) return "${f.what} whose root table offset $root lies outside its $end bytes"
        return null
    }
}
