package org.mobilelr.core

/** The bytes are not a well-formed protobuf message. */
class WireError(message: String) : IllegalArgumentException(message)

/**
 * External-data references in an ONNX file without an ONNX parser: the Kotlin twin of
 * `mobile_lr/onnx_wire.py` (the golden vectors' `onnx_wire` cases check that both agree).
 *
 * An ONNX tensor may keep its bytes outside the model file (`data_location: EXTERNAL`,
 * `external_data` entries with a `location` that ONNX Runtime resolves relative to the model's
 * directory, or as an absolute path). A bundle is a flat directory of verified files, so any
 * such reference reaches a file the manifest does not cover; [BundleVerifier] refuses it before
 * ORT sees the model. The walk follows every message that can hold a tensor (graph
 * initializers, sparse initializers, node attributes, sub-graphs, functions, training-info
 * graphs) and skips every other field by its length.
 */
object OnnxWire {
    const val MAX_NESTING = 100

    private val CHILDREN: Map<String, Map<Int, String>> = mapOf(
        "ModelProto" to mapOf(7 to "GraphProto", 20 to "TrainingInfoProto", 25 to "FunctionProto"),
        "TrainingInfoProto" to mapOf(1 to "GraphProto", 2 to "GraphProto"),
        "GraphProto" to mapOf(1 to "NodeProto", 5 to "TensorProto", 15 to "SparseTensorProto"),
        "NodeProto" to mapOf(5 to "AttributeProto"),
        "FunctionProto" to mapOf(7 to "NodeProto", 11 to "AttributeProto"),
        "AttributeProto" to mapOf(5 to "TensorProto", 6 to "GraphProto", 10 to "TensorProto",
            11 to "GraphProto", 22 to "SparseTensorProto", 23 to "SparseTensorProto"),
        "SparseTensorProto" to mapOf(1 to "TensorProto", 2 to "TensorProto"),
        "TensorProto" to emptyMap())
    private const val TENSOR_NAME = 8
    private const val EXTERNAL_DATA = 13
    private const val DATA_LOCATION = 14
    private const val EXTERNAL = 1L

    private const val IR_VERSION = 1L
    private const val OPSET_IMPORT = 8L
    private const val GRAPH = 7L
    private const val GRAPH_OUTPUT = 12L
    /** The oldest ONNX IR ONNX Runtime loads (Python's `MIN_IR_VERSION`). */
    const val MIN_IR_VERSION = 3L

    private class Message(val kind: String, val start: Int, val end: Int, val depth: Int)

    /** One field of a message: number, wire type, a varint's value, a length-delimited field's bytes. */
    private class Field(val number: Long, val wire: Int, val value: Long, val from: Int, val to: Int)

    /** The fields of the message in `data[start, end)`, refused when malformed. */
    private fun fields(data: ByteArray, start: Int, end: Int): List<Field> {
        val out = ArrayList<Field>()
        var i = start
        while (i < end) {
            val (key, afterKey) = varint(data, i, end)
            i = afterKey
            val number = key ushr 3  // a Long: an unknown field of a huge number is skipped, as in Python
            val wire = (key and 7L).toInt()
            if (number == 0L) throw WireError("field number 0 at byte $i")
            var value = -1L
            var from = 0
            var to = 0
            when (wire) {
                0 -> { val (v, next) = varint(data, i, end); value = v; i = next }
                1, 5 -> { i += if (wire == 1) 8 else 4; if (i > end) throw WireError("truncated fixed-width field") }
                2 -> {
                    val (length, next) = varint(data, i, end)
                    if (length > (end - next).toLong()) throw WireError("length-delimited field $number runs past its message")
                    from = next
                    to = next + length.toInt()
                    i = to
                }
                else -> throw WireError("unsupported wire type $wire (field $number)")
            }
            out.add(Field(number, wire, value, from, to))
        }
        return out
    }

    /** Names (or `<unnamed>`) of every tensor of a `ModelProto` that refers to external data. */
    fun externalDataRefs(data: ByteArray): List<String> {
        val found = ArrayList<String>()
        val stack = ArrayList<Message>()
        stack.add(Message("ModelProto", 0, data.size, 0))
        while (stack.isNotEmpty()) {
            val m = stack.removeAt(stack.size - 1)
            if (m.depth > MAX_NESTING) throw WireError("messages nested deeper than $MAX_NESTING")
            val children = CHILDREN.getValue(m.kind)
            var name = "<unnamed>"
            var external = false
            for (f in fields(data, m.start, m.end)) {
                if (m.kind == "TensorProto") {
                    if (f.number == TENSOR_NAME.toLong() && f.wire == 2) {
                        name = String(data, f.from, f.to - f.from, Charsets.UTF_8).take(200)
                    } else if (f.number == EXTERNAL_DATA.toLong() || (f.number == DATA_LOCATION.toLong() && f.value == EXTERNAL)) {
                        external = true
                    }
                } else {
                    val child = if (f.number <= Int.MAX_VALUE) children[f.number.toInt()] else null
                    if (child != null) {
                        if (f.wire != 2) throw WireError("${m.kind} field ${f.number} is not a message")
                        stack.add(Message(child, f.from, f.to, m.depth + 1))
                    }
                }
            }
            if (external) found.add(name)
        }
        return found
    }

    /**
     * What keeps well-formed wire data from being an ONNX model, or null (Python's
     * `model_problem`): an empty file parses as an empty `ModelProto`. A model has an IR version
     * ORT loads, an operator set and a graph with an output. Call after [externalDataRefs].
     */
    fun modelProblem(data: ByteArray): String? {
        var ir = 0L
        var opsets = 0
        var graph: Field? = null
        for (f in fields(data, 0, data.size)) {
            if (f.number == IR_VERSION && f.wire == 0) ir = f.value
            else if (f.number == OPSET_IMPORT && f.wire == 2) opsets++
            else if (f.number == GRAPH && f.wire == 2) graph = f
        }
        if (graph == null) return "not an ONNX model: no graph"
        // a varint beyond Long.MAX_VALUE reads as negative here: Python's is a huge IR version, not < 3
        if (ir in 0 until MIN_IR_VERSION) return "not an ONNX model ONNX Runtime loads: IR version $ir < $MIN_IR_VERSION"
        if (opsets == 0) return "not an ONNX model: no operator set imported"
        if (fields(data, graph.from, graph.to).none { it.number == GRAPH_OUTPUT && it.wire == 2 }) {
            return "not an ONNX model: its graph has no output"
        }
        return null
    }

    private fun varint(data: ByteArray, start: Int, end: Int): Pair<Long, Int> {
        var value = 0L
        var shift = 0
        var i = start
        while (true) {
            if (i >= end || shift > 63) throw WireError("truncated or overlong varint at byte $i")
            val b = data[i].toInt() and 0xff
            i++
            value = value or ((b and 0x7f).toLong() shl shift)
            if (b < 0x80) return Pair(value, i)
            shift += 7
        }
    }
}
