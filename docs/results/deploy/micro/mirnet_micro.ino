// MIRNet on an Arduino Nano 33 BLE Sense (nRF52840, Cortex-M4F 64 MHz, 256 KB RAM, 1 MB flash).
// Written by `mirnet export micro` for model "lol_micro": a camera frame in, tiles through the int8
// model, the enhanced frame out over Serial.
//
// Libraries: Arduino_OV767X from the Arduino IDE's Library Manager; Arduino_TensorFlowLite is no longer
// there: clone https://github.com/tensorflow/tflite-micro-arduino-examples into the sketchbook's
// libraries folder as Arduino_TensorFlowLite (e.g. ~/Arduino/libraries/Arduino_TensorFlowLite).
// The OV7675 camera of the Tiny Machine Learning Kit gives QCIF (176x144) RGB565 frames.
//
// Memory: tensor arena 129761 bytes (measured by bisection in the TFLite Micro interpreter, plus a
// margin for CMSIS-NN scratch buffers), one RGB565 frame (50,688 bytes) enhanced in place, and the
// original pixels of tile overlaps that later tiles still read (13,312 bytes).
//
// Over Serial, each enhanced frame is the 8 bytes "MIRNETFR" then 50,688 bytes of RGB565, each pixel
// high byte first as the camera sends it (what Arduino_OV767X's viewer reads); text log lines come
// between frames, so a host reads up to the marker, then the frame.

#include <TensorFlowLite.h>
#include <Arduino_OV767X.h>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "tensorflow/lite/schema/schema_generated.h"

#include "mirnet_model_data.h"
#include "mirnet_tiles.h"

constexpr int kArenaSize = 129761;

alignas(16) static uint8_t tensor_arena[kArenaSize];
static uint16_t frame[mirnet::kFrameW * mirnet::kFrameH];
static tflite::MicroInterpreter* interpreter = nullptr;
static TfLiteTensor *input = nullptr, *output = nullptr;

// The camera sends each RGB565 pixel high byte first; the Cortex-M4 reads uint16_t low byte first.
static void swap_bytes(uint16_t* pixels, int count) {
  for (int i = 0; i < count; ++i) pixels[i] = uint16_t((pixels[i] >> 8) | (pixels[i] << 8));
}


void setup() {
  Serial.begin(921600);
  while (!Serial) {}
  tflite::InitializeTarget();
  const tflite::Model* model = tflite::GetModel(g_mirnet_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) { MicroPrintf("model schema %d, library %d", model->version(), TFLITE_SCHEMA_VERSION); while (true) {} }
  static tflite::MicroMutableOpResolver<16> resolver;
  resolver.AddConv2D();
  resolver.AddMul();
  resolver.AddMaximum();
  resolver.AddMean();
  resolver.AddLogistic();
  resolver.AddStridedSlice();
  resolver.AddConcatenation();
  resolver.AddAdd();
  resolver.AddMirrorPad();
  resolver.AddDepthwiseConv2D();
  resolver.AddDepthToSpace();
  resolver.AddReshape();
  resolver.AddSoftmax();
  resolver.AddResizeBilinear();
  resolver.AddMinimum();
  resolver.AddRelu();
  static tflite::MicroInterpreter static_interpreter(model, resolver, tensor_arena, kArenaSize);
  interpreter = &static_interpreter;
  if (interpreter->AllocateTensors() != kTfLiteOk) { MicroPrintf("AllocateTensors failed: raise kArenaSize"); while (true) {} }
  MicroPrintf("arena used: %d of %d bytes", int(interpreter->arena_used_bytes()), kArenaSize);
  input = interpreter->input(0);
  output = interpreter->output(0);
  if (!Camera.begin(QCIF, RGB565, 1)) { MicroPrintf("camera not found"); while (true) {} }
}

void loop() {
  Camera.readFrame(frame);
  swap_bytes(frame, mirnet::kFrameW * mirnet::kFrameH);
  const unsigned long started = millis();
  const mirnet::TileIO io{input->data.int8, output->data.int8, input->params.scale, output->params.scale,
                          input->params.zero_point, output->params.zero_point};
  if (!mirnet::enhance_frame(frame, io, [] { return interpreter->Invoke() == kTfLiteOk; })) MicroPrintf("Invoke failed");
  MicroPrintf("frame enhanced in %lu ms", millis() - started);
  swap_bytes(frame, mirnet::kFrameW * mirnet::kFrameH);  // back to the camera's byte order
  Serial.write(reinterpret_cast<const uint8_t*>("MIRNETFR"), 8);
  Serial.write(reinterpret_cast<const uint8_t*>(frame), sizeof(frame));  // RGB565, 176x144, row-major
}
