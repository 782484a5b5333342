// Package imaging turns camera frames into palm templates. Everything
// image-related goes through OpenCV (gocv):
//
//   - Presence: is a hand-shaped object in range, and is it still? Cheap
//     enough for every frame (it works on a 4× downscaled frame).
//   - Quality and guidance: focus, exposure, size, centring, stillness and
//     finger spread, each failed gate mapped to what the user should do.
//   - Palm ROI: hand mask (opened, so that the bright strips stray light
//     draws along the frame's edges cannot join fingertips), palm centre
//     (largest inscribed circle), finger
//     valleys from the contour's convexity defects, the common tangent of
//     the index–middle and ring–little valleys as the palm's x axis, and a
//     square ROI below it scaled by the valley distance, warped to 128×128
//     with the fingers up and the thumb to the right (left hands mirrored),
//     so it is invariant to rotation, scale and handedness.
//   - Features: the ROI is contrast-normalised, then filtered by two banks of
//     six even Gabor filters — a broad one for veins and a fine one for palm
//     lines — and the signs of the responses are pooled into 32×32 bit
//     planes (the BOCV family of orientation codes), with a reliability mask
//     that drops cells outside the hand, saturated cells and cells whose
//     orientation response is too weak to be stable.
//
// Every gocv.Mat created here is closed before the function that created it
// returns, or owned by a type with a Close method; a test built with
// -tags matprofile checks that extraction leaks none. Frames are copied into
// Mats (gocv.NewMatFromBytes does not copy, and drivers reuse their buffers),
// and no image, ROI or template is ever written, logged or returned in an
// error.
package imaging
